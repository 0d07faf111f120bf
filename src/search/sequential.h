/* Campaigns on a model rather than a mappings file: the mappings are
 * extracted in memory (model/extract.h) from images of a dataset, and the
 * search runs as nl_gp_campaign_run does, in the same result directory
 * layout (parts, LAYER.csv, chosen.exprs).
 *
 * Sequential search: norm slot k is searched on the mapping recorded with
 * slots 0..k-1 already replaced by their chosen functions (slot k itself
 * still LayerNorm, so the target is LayerNorm's output on the inputs it
 * will see once the earlier layers are replaced). Extraction is
 * interleaved with the search: one forward pass over the images per slot,
 * recording that slot alone (the points a full extraction draws for it:
 * slot 0's mapping is the independent extraction's). Each layer's parts
 * carry the fingerprint of the mapping they were searched on, so a rerun
 * resumes: the finished layers' choices are read back from their parts,
 * put in place, and the next slot's mapping is recorded again identically
 * (same images, same sampling seed, same functions). Each layer's mapping
 * is kept in DIR/maps/LAYER.safetensors (a mappings file of one layer). */
#ifndef NL_SEARCH_SEQUENTIAL_H
#define NL_SEARCH_SEQUENTIAL_H

#include <stdint.h>

#include "base/error.h"
#include "search/campaign_opts.h"
#include "search/gp.h"

struct nl_vit;

typedef struct nl_gp_source {
  const char *model;   /* checkpoint path (safetensors, timm names) */
  const char *data;    /* data spec (fmnist:test) */
  long offset;         /* first image (0) */
  int images;          /* images (NL_EXTRACT_IMAGES) */
  long points;         /* points per layer (NL_EXTRACT_POINTS; 0: every position) */
  uint64_t seed;       /* sampling seed (NL_EXTRACT_SEED) */
  int sequential;      /* 1: the sequential search above; 0: one extraction, then the
                          ordinary campaign */
} nl_gp_source;

void nl_gp_source_default(nl_gp_source *s);
/* The source of the options' --model, --data, --offset, --images,
 * --points, --extract-seed, --sequential (pointing into o). */
void nl_gp_source_from_opts(nl_gp_source *s, const nl_gp_campaign_opts *o);

/* Run campaign c (c->maps is ignored) on mappings extracted from s->model
 * (see above). A sequential run searches every norm slot in forward order
 * (c->layers must be NULL) and rewrites chosen.exprs in the model's slot
 * order after each layer; its progress reports count tasks over all
 * layers. Same returns as nl_gp_campaign_run (NL_EINTR when stopped:
 * rerun to resume); NL_EINPUT naming the model or data when they cannot be
 * read or do not fit each other. */
int nl_gp_model_campaign_run(const nl_gp_campaign *c, const nl_gp_source *s, nl_gp_summary *out,
                             nl_error *err);

#endif
