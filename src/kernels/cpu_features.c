// What the CPU runs, as bits: the kernel table asks for AVX2+FMA or
// AVX-512, and the OpenBLAS core check (blas_core.c) for every feature one
// of OpenBLAS's x86-64 cores assumes.
#define _DEFAULT_SOURCE  // syscall(2), for arch_prctl
#include <pthread.h>

#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

// AMX: the CPU's AMX-TILE and AMX-BF16 (CPUID 7.0 EDX bits 24, 22), the OS
// saving the tile state (XCR0 bits 17, 18), and Linux letting this process
// use it (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA: process-wide, and
// asked once, before any thread uses a tile).
static int amx_usable(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 22))) return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;  // OSXSAVE: xgetbv works
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return 0;
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return 0;
#endif
}

// __builtin_cpu_supports also checks that the OS saves the vector registers.
static unsigned detect(void) {
    __builtin_cpu_init();
    unsigned f = 0;
    // The builtin takes only string literals: one line a feature.
#define FEATURE(name, bit) f |= __builtin_cpu_supports(name) ? (unsigned)(bit) : 0u
    FEATURE("sse2", CPU_SSE2);
    FEATURE("sse3", CPU_SSE3);
    FEATURE("ssse3", CPU_SSSE3);
    FEATURE("sse4.1", CPU_SSE41);
    FEATURE("sse4.2", CPU_SSE42);
    FEATURE("sse4a", CPU_SSE4A);
    FEATURE("avx", CPU_AVX);
    FEATURE("avx2", CPU_AVX2);
    FEATURE("fma", CPU_FMA);
    FEATURE("fma4", CPU_FMA4);
    FEATURE("xop", CPU_XOP);
    FEATURE("avx512bf16", CPU_AVX512_BF16);
#undef FEATURE
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        f |= CPU_AVX512;
    unsigned a, b, c, d;  // 3DNow! has no name in __builtin_cpu_supports
    if (__get_cpuid(0x80000001u, &a, &b, &c, &d) && (d & (1u << 31))) f |= CPU_3DNOW;
    if ((f & CPU_AVX512) && amx_usable()) f |= CPU_AMX_BF16;
    return f;
}
#else
static unsigned detect(void) { return 0; }
#endif

static unsigned features;
static void detect_once(void) { features = detect(); }

unsigned cpu_features(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, detect_once);  // CPUID traps to the hypervisor in a VM: ask once
    return features;
}

int cpu_has_avx2_fma(void) { return (cpu_features() & (CPU_AVX2 | CPU_FMA)) == (CPU_AVX2 | CPU_FMA); }
int cpu_has_avx512(void) { return (cpu_features() & CPU_AVX512) != 0; }
