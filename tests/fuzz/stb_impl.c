// stb_image and stb_image_resize compiled into the image fuzzer, so the
// decoders that `trainer predict` runs (Debian's libstb is built from these
// same headers) get coverage feedback and ASan checks. Their objects are
// linked whole and take precedence over libstb.so's symbols.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_resize.h>
