// Runtime-dispatched vector widths for the elementwise hot loops (Adam, the compact layer's row
// maps). The build targets baseline x86-64 (SSE2, 4 floats) so binaries run anywhere; these
// functions are compiled again for AVX2 (8) and AVX-512 (16) and the loader picks the widest the
// CPU has. train_core is built with -ffp-contract=off, so no clone fuses a·b + c into one FMA:
// every clone computes the same floats, and results do not depend on the machine.
//
// Not under ThreadSanitizer: the loader runs the clones' ifunc resolvers while it relocates the
// executable, before TSan's runtime is set up, and the instrumented resolver crashes every binary
// at start (GCC 12 and Clang 14 alike). The baseline code TSan then checks computes the same floats.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define VGGCACHE_NO_SIMD_CLONES
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VGGCACHE_NO_SIMD_CLONES
#endif
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(VGGCACHE_NO_SIMD_CLONES)
#define VGGCACHE_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VGGCACHE_SIMD_CLONES
#endif
