// trainer: the command-line program; see trainer.h.
#include "trainer.h"

int main(int argc, char **argv) {
    // Line by line even into a pipe or file: progress and errors (stderr)
    // then appear in the order they happened.
    setvbuf(stdout, NULL, _IOLBF, 0);
    cnn_threads_limit_spin(argv);  // may re-execute this program: before MPI starts
    ranks_init(&argc, &argv);
    atexit(ranks_finish);
    Options o;
    parse_args(argc, argv, &o);
    ranks_check_args(argc, argv);
    int rc;
    if (!strcmp(o.command, "eval")) rc = cmd_eval(&o);
    else if (!strcmp(o.command, "predict")) rc = cmd_predict(&o);
    else if (!strcmp(o.command, "summary")) rc = cmd_summary(&o);
    else rc = cmd_train(&o);
    free(o.images);
    ranks_exit_ok();
    return rc;
}

