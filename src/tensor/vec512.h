/* AVX-512 building blocks of the tensor kernels (gemm.c, kernels.c,
 * layers.c): base/vmath.h's exp on 16 lanes with fused multiply-adds.
 * Include only where NL_VEC512 is defined (GCC on x86-64), call only from
 * functions compiled for AVX-512 (NL_VEC512_TARGET) and only where
 * nl_gemm_available() (tensor/gemm.h). */
#ifndef NL_TENSOR_VEC512_H
#define NL_TENSOR_VEC512_H

#if defined(__GNUC__) && defined(__x86_64__)
#define NL_VEC512 1
#include <immintrin.h>

#define NL_VEC512_TARGET __attribute__((target("avx512f,fma")))
#define NL_VEC512_INLINE NL_VEC512_TARGET static inline __attribute__((always_inline))

/* exp(y): y clamped to [-104, 89], Cody-Waite split of ln 2 and the
 * degree-7 polynomial of nl_vm_exp, scaled by 2^n with scalef (exact down
 * into the subnormals); NaN stays NaN. */
NL_VEC512_INLINE __m512 nl_exp512(__m512 y) {
  const __m512 yc = _mm512_max_ps(_mm512_set1_ps(-104.0f), _mm512_min_ps(y, _mm512_set1_ps(89.0f)));
  const __m512 nf = _mm512_roundscale_ps(_mm512_mul_ps(yc, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(0.693359375f), yc);
  r = _mm512_fmadd_ps(nf, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 e = _mm512_set1_ps(1.0f / 5040.0f);
  e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 720.0f));
  e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 120.0f));
  e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 24.0f));
  e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 6.0f));
  e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(0.5f));
  e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f));
  e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f));
  e = _mm512_scalef_ps(e, nf);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, y, _CMP_UNORD_Q), e, y);
}

/* Mask of the first n (< 16: fewer) lanes. */
NL_VEC512_INLINE __mmask16 nl_mask512(size_t n) {
  return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

#endif
#endif
