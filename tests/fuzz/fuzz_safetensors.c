/* libFuzzer target: the safetensors header parser and validator on
 * arbitrary bytes; every accepted tensor is converted to float, which reads
 * exactly its byte span (ASan checks that it stays inside the input). */
#include <stdint.h>
#include <stdlib.h>

#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* an exact-size copy so reads past the end are caught */
  uint8_t *copy = malloc(size ? size : 1);
  for (size_t i = 0; i < size; i++) copy[i] = data[i];
  nl_st_file f;
  nl_error err;
  if (nl_st_parse(&f, "fuzz", copy, size, &err) == 0) {
    for (int i = 0; i < f.n; i++) {
      if (f.t[i].numel > (1u << 20)) continue;
      float *o = malloc(sizeof(float) * (f.t[i].numel + 1));
      nl_st_to_f32(&f.t[i], o);
      free(o);
    }
    for (int i = 0; i < f.nmeta; i++) (void)nl_st_meta_get(&f, f.meta[i].key);
    nl_st_close(&f);
  } else if (err.code != NL_EINPUT) {
    abort(); /* every rejection is an input error */
  }
  free(copy);
  return 0;
}
