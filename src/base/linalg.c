/* Cholesky factor and solves (base/linalg.h). */
#include "base/linalg.h"

#include <math.h>

int nl_cholesky(double *A, int k) {
  for (int j = 0; j < k; j++) {
    double s = A[(long)j * k + j];
    for (int m = 0; m < j; m++) s -= A[(long)j * k + m] * A[(long)j * k + m];
    if (!(s > 0)) return -1;
    double l = sqrt(s);
    A[(long)j * k + j] = l;
    for (int i = j + 1; i < k; i++) {
      double t = A[(long)i * k + j];
      const double *ri = A + (long)i * k, *rj = A + (long)j * k;
      for (int m = 0; m < j; m++) t -= ri[m] * rj[m];
      A[(long)i * k + j] = t / l;
    }
  }
  return 0;
}

void nl_cholesky_solve(const double *L, double *b, int k, int nrhs) {
  for (int i = 0; i < k; i++) { /* L u = b */
    double *bi = b + (long)i * nrhs;
    for (int m = 0; m < i; m++) {
      double l = L[(long)i * k + m];
      const double *bm = b + (long)m * nrhs;
      for (int c = 0; c < nrhs; c++) bi[c] -= l * bm[c];
    }
    double d = L[(long)i * k + i];
    for (int c = 0; c < nrhs; c++) bi[c] /= d;
  }
  for (int i = k - 1; i >= 0; i--) { /* L^T z = u */
    double *bi = b + (long)i * nrhs;
    for (int m = i + 1; m < k; m++) {
      double l = L[(long)m * k + i];
      const double *bm = b + (long)m * nrhs;
      for (int c = 0; c < nrhs; c++) bi[c] -= l * bm[c];
    }
    double d = L[(long)i * k + i];
    for (int c = 0; c < nrhs; c++) bi[c] /= d;
  }
}
