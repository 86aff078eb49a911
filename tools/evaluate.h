/* A loaded checkpoint (cli_model) evaluated on an open dataset in dataset order: loss,
 * top-1, top-5 and every sample's logits. What eval and report share; prints nothing. */
#ifndef PT_TOOLS_EVALUATE_H
#define PT_TOOLS_EVALUATE_H

#include "polytrain/trainer.h"
#include "polytrain/dataset.h"
#include "tools/common.h"

/* Checks that ds fits the checkpoint (cli_check_checkpoint_data), normalises ds with the
 * checkpoint's statistics, and evaluates every sample; a non-finite loss (weights that
 * overflow) is PT_ERR_FORMAT naming the checkpoint, never a result. logits:
 * when not NULL, a malloc'd [res->count, classes] array (free it). */
pt_status cli_evaluate_dataset(cli_model *m, const char *checkpoint, pt_dataset *ds, const char *data_name,
                               pt_eval_result *res, float **logits, pt_error *err);

/* The one compatibility check (pt_dataset_check_compatible) between what a checkpoint was
 * trained on (meta: input shape and classes in order) and ds, naming both; what: how the
 * data is used ("validation data", "training data"). */
pt_status cli_check_checkpoint_data(const pt_model_meta *meta, const char *checkpoint, const pt_dataset *ds,
                                    const char *what, pt_error *err);

/* Every class's name, the checkpoint's, else the dataset's, else its index, as malloc'd
 * copies (cli_class_names_free); NULL when out of memory. */
char **cli_class_names(const cli_model *m, const pt_dataset *ds);
void cli_class_names_free(char **names, int classes);

#endif
