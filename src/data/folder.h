/* Image folders (torchvision's ImageFolder) and CIFAR-10's binary batches,
 * decoded and transformed into an nl_dataset at the model's input size on
 * worker threads. The specs and options are in data/dataset.h; this is
 * nl_dataset_load_opts's back end for them. */
#ifndef NL_DATA_FOLDER_H
#define NL_DATA_FOLDER_H

#include "data/dataset.h"

int nl_folder_load(nl_dataset *d, const char *spec, long offset, long limit,
                   const nl_data_opts *o, nl_error *err);

#endif
