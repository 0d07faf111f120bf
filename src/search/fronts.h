/* The fronts files: CSV (RFC 4180 quoting), one row per Pareto member,
 * with the header nl_gp_csv_header (search/gp.h):
 *
 *   layer,seed,rank,nodes,flops,train_fitness,val_fitness,val_mse,val_r2,expr,origin
 *
 * origin says where the member came from (search, seed, injected:
 * nl_gp_origin); files written before it existed lack the column, and
 * their members read as the search's.
 *
 * The writer (the campaign's parts and merged LAYER.csv files, see
 * gp_campaign.c) and the one reader of a fronts directory live here, over
 * one CSV record splitter. */
#ifndef NL_SEARCH_FRONTS_H
#define NL_SEARCH_FRONTS_H

#include <stddef.h>
#include <stdio.h>

#include "base/error.h"
#include "search/gp.h"

/* ---- CSV ---- */

/* Split one CSV record starting at *p: quoted fields may hold commas,
 * doubled quotes and newlines (*line counts those). The fields are
 * malloc'ed into *fields (free with nl_csv_free). Returns the number of
 * fields, -1 on an unterminated quote; *p moves past the record's end of
 * line. A blank line is one empty field. */
int nl_csv_record(const char **p, char ***fields, int *line);
void nl_csv_free(char **fields, int n);
/* Write one field, quoted when it holds a comma, a quote or a newline. */
void nl_csv_field(FILE *fp, const char *s);

/* ---- writing ---- */

/* One row per member: layer, seed, rank, nodes, flops, the fitness
 * figures (%.17g), the expression (always quoted) and the origin. */
void nl_fronts_write_rows(FILE *fp, const char *layer, int seed, const nl_gp_member *m, int n);

/* ---- reading a directory ---- */

/* One row. Numeric columns absent from a file read as NAN (doubles) or -1
 * (integers); expr absent reads as NULL. */
typedef struct nl_front_member {
  char *layer;
  int seed, rank, nodes, flops;
  double train_fitness, val_fitness, val_mse, val_r2;
  char *expr;
  int origin;    /* nl_gp_origin; NL_GP_ORIGIN_SEARCH when the column is absent */
} nl_front_member;

/* The rows of the *.csv files of a directory (files in name order, rows
 * in file order). `has` holds the columns every file has, as bits
 * NL_FRONT_COL(name). */
typedef struct nl_fronts {
  nl_front_member *m;
  size_t n;
  unsigned has;
} nl_fronts;

/* Bit of a column name in nl_fronts.has; 0 for a name that is not a
 * column of the format. */
unsigned nl_front_col(const char *name);
/* A numeric column of a row by name (NAN for one that is not numeric). */
double nl_front_value(const nl_front_member *m, const char *col);

/* Read the directory once: every row, or only the rows of `layer` (NULL:
 * all). A 'layer' column is required; numeric columns must hold numbers.
 * Errors name the file and line. */
int nl_fronts_read(const char *dir, const char *layer, nl_fronts *out, nl_error *err);
void nl_fronts_free(nl_fronts *f);

/* Summary of one layer's front. */
typedef struct nl_front_summary {
  char *layer;
  int members;       /* rows for this layer (all seeds) */
  double best_r2;    /* highest val_r2 (NAN when the column is absent) */
  char *best_expr;   /* expression of that row, or NULL */
} nl_front_summary;

/* The member of rows m[0..n) that `how` selects, as evolve --select and
 * 'pick' do (nl_gp_select): minval the lowest val_fitness (val_mse where
 * the column is absent; ties: fewer nodes), knee the knee of the (flops,
 * val_mse) non-dominated set. -1 when n is 0. */
int nl_fronts_select(const nl_front_member *m, size_t n, nl_gp_selection how);

/* evolve --select budget=F and 'pick LAYER budget=F': the member with the
 * lowest val_fitness (val_mse where absent) among those whose expression
 * costs at most max_flops (nl_cost on the parsed, simplified tree, clip 0;
 * the flops column is not trusted). -1 when none does (*cheapest, may be
 * NULL: the lowest cost found, -1 when n is 0); -2 with err when an
 * expression does not parse. */
int nl_fronts_select_within(const nl_front_member *m, size_t n, double max_flops, int *cheapest,
                            nl_error *err);

/* One summary per layer, in the order layers first appear. */
void nl_fronts_summarize(const nl_fronts *f, nl_front_summary **out, int *n);
void nl_front_summaries_free(nl_front_summary *s, int n);

#endif
