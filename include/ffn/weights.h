/* ffn — a model's weights in the formats PyTorch and NumPy read: .npz (a zip
 * of .npy arrays, stored or deflated) and .safetensors (an 8-byte little-endian
 * header length, a JSON header, then the raw little-endian float32 data).
 *
 * Names (the one mapping, ffn_weights_torch_names): layers become the modules
 * of a PyTorch nn.Sequential, counted from 0 in order:
 *   dense:U:ACT    nn.Linear(in, U) -> "<i>.weight" [U, in], "<i>.bias" [U]; then,
 *                  unless ACT is identity, one activation module i+1 (nn.ReLU,
 *                  nn.LeakyReLU(slope), nn.Sigmoid, nn.Tanh, nn.GELU, nn.Softmax(dim=-1))
 *   dropout:P      nn.Dropout(P), no tensors
 *   layernorm      nn.LayerNorm(in, eps=1e-5) -> "<i>.weight" [in], "<i>.bias" [in]
 * so "dense:64:relu,dense:10" is nn.Sequential(nn.Linear(D, 64), nn.ReLU(),
 * nn.Linear(64, 10)) with 0.weight, 0.bias, 2.weight, 2.bias. The residual
 * ffn and swiglu blocks and LoRA adapters have no such module: exporting them
 * is refused (merge adapters first with ffn-eval --merge-lora).
 *
 * Metadata: the ffn spec as a JSON object {"format": "ffn-weights",
 * "format_version": 1, "model_spec", "input_dim", "loss", "ffn_version"}, in
 * safetensors' __metadata__ under "ffn_spec" and in npz as the entry
 * "__ffn_spec__" (uint8 [n]: the JSON's bytes). A file without it (written by
 * PyTorch or NumPy) needs the spec from elsewhere (--model).
 *
 * A weights file holds no optimizer state, position, frozen flags or pruning
 * masks: loaded, it is a checkpoint with parameters only. */
#ifndef FFN_WEIGHTS_H
#define FFN_WEIGHTS_H

#include <stddef.h>
#include "ffn/ckpt.h"
#include "ffn/data.h"
#include "ffn/model.h"
#include "ffn/status.h"

typedef enum { FFN_WEIGHTS_NONE = 0, FFN_WEIGHTS_NPZ, FFN_WEIGHTS_SAFETENSORS } ffn_weights_format;

/* By the file name's extension: ".npz", ".safetensors", else NONE (an HDF5 checkpoint). */
ffn_weights_format ffn_weights_format_of(const char *path);

/* The PyTorch name of each of m's tensors, in flat order: names[k] (malloc'd
 * array of malloc'd strings, free with ffn_weights_names_free) belongs to
 * ffn_model_tensor(m, k). FFN_ERR_ARG naming the layer for a layer without a
 * PyTorch module. */
ffn_status ffn_weights_torch_names(const ffn_model *m, char ***names, size_t *count);
void ffn_weights_names_free(char **names, size_t count);

/* Writes m's tensors under their PyTorch names, with the ffn spec (loss may
 * be NULL) as metadata, to path.tmp, then renames it onto path. The format
 * comes from the extension. */
ffn_status ffn_weights_save(const ffn_model *m, const char *loss, const char *path);
/* The same with the training data's metadata (NULL: none) in the ffn spec
 * JSON as well: "feature_mean" and "feature_std" (arrays of D numbers that
 * round-trip to the float64 values; the model expects (x - mean) / std) and
 * "class_names" (strings in class order), when present. Loading a weights
 * file ignores them. */
ffn_status ffn_weights_save_meta(const ffn_model *m, const char *loss, const ffn_data_meta *meta, const char *path);

/* Reads a weights file into a checkpoint (model, params, spec, input_dim,
 * loss; no optimizer, step 0). The model is the file's ffn spec when it holds
 * one, else spec_hint (NULL: an error saying to give --model); its input
 * width then comes from the first tensor. loss_hint is used when the file
 * names none. Every tensor of the model must be there with its shape, and no
 * other; values must be finite. Errors name the file, the tensor and what was
 * expected. */
ffn_status ffn_weights_load(ffn_checkpoint *out, const char *path, const char *spec_hint, const char *loss_hint);

#endif
