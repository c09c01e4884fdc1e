/* STREAM-like bandwidth probes for the benchmark's roofline (benchmark-only; built and loaded with
 * asgd_bridge.torch._fused.build_shared_library, the same compiler, flags and cache as the fused
 * ASGD kernel, so the probe and the kernel are compiled alike).
 *
 * stream_run(kind, n, a, b, c, reps, nthreads): `reps` passes of one kernel over fp32 arrays of n
 * elements, on `nthreads` OpenMP threads with a static schedule (every thread touches the same
 * elements in every pass, as the fused kernel does). reps > 1 amortises the call and the thread
 * start-up over several passes for small, cache-resident arrays; a compiler barrier between passes
 * keeps every pass. Bytes per element (STREAM convention / actual, with the read-for-ownership of
 * lines that are only written):
 *
 *   0 copy     a = b                            8 / 12
 *   1 scale    a = s*b                          8 / 12
 *   2 add      a = b + c                       12 / 16
 *   3 triad    a = b + s*c                     12 / 16
 *   4 update1  a = s*a          (read-modify-write) 8 / 8
 *   5 update2  a = a + s*b      (read-modify-write) 12 / 12
 *   6 asgd     a = k*a - e*b; c = c + m*(a - c)  (the fused ASGD kernel's pattern) 20 / 20
 *
 * The constants keep every array bounded and away from subnormals however many passes run
 * (b is only read; update1 multiplies by -1).
 */
#include <stdint.h>

#define STREAM_API __attribute__((visibility("default")))

#define PASS(BODY)                                                                          \
    do {                                                                                    \
        for (int r = 0; r < reps; ++r) {                                                    \
            _Pragma("omp for simd schedule(static)")                                        \
            for (int64_t i = 0; i < n; ++i) { BODY; }                                       \
            __asm__ __volatile__("" ::: "memory");                                          \
        }                                                                                   \
    } while (0)

STREAM_API int stream_kinds(void) { return 7; }

STREAM_API int stream_run(int kind, int64_t n, float *restrict a, float *restrict b, float *restrict c,
                          int reps, int nthreads) {
    if (kind < 0 || kind >= 7 || n < 0) return -1;
    if (nthreads < 1) nthreads = 1;
    const float s = 0.5f, k = 0.999f, e = 1e-3f, m = 0.5f;
    _Pragma("omp parallel num_threads(nthreads)")
    {
        switch (kind) {
            case 0: PASS(a[i] = b[i]); break;
            case 1: PASS(a[i] = s * b[i]); break;
            case 2: PASS(a[i] = b[i] + c[i]); break;
            case 3: PASS(a[i] = b[i] + s * c[i]); break;
            case 4: PASS(a[i] = -1.0f * a[i]); break;
            case 5: PASS(a[i] = a[i] + e * b[i]); break;
            case 6: PASS({
                float p = k * a[i] - e * b[i];
                a[i] = p;
                c[i] = c[i] + m * (p - c[i]);
            }); break;
            default: break;
        }
    }
    return 0;
}
