/* Small dense linear algebra in double: the Cholesky factor of a symmetric
 * positive definite matrix and the solves with it (least-squares fits:
 * the expression constants of search/fit.c, the fc2 refit of model/prune.c). */
#ifndef NL_BASE_LINALG_H
#define NL_BASE_LINALG_H

/* A (k x k, row-major, lower triangle read) becomes L, lower triangular,
 * with A = L L^T; the upper triangle is left as it was. Returns -1 (A
 * partly overwritten) when A is not positive definite. */
int nl_cholesky(double *A, int k);

/* Solve L L^T z = b in place for b with nrhs columns (b: k x nrhs,
 * row-major), L from nl_cholesky. */
void nl_cholesky_solve(const double *L, double *b, int k, int nrhs);

#endif
