/* ffn — the library in one include: feedforward networks trained
 * data-parallel over MPI, with HDF5 datasets and checkpoints.
 *
 *   #include <ffn/ffn.h>      cc prog.c $(pkg-config --cflags --libs ffn)
 *                             or find_package(ffn) + target_link_libraries(prog ffn::ffn)
 *
 * The stable API (documented in each header; changed only with a new minor
 * version while the major is 0, and listed in the README):
 *   version.h      FFN_VERSION_*, ffn_version()
 *   status.h       ffn_status, ffn_last_error(): every call that can fail returns a status
 *   model.h        the layer stack: spec text, create, init, reserve, forward, backward
 *   act.h, loss.h  activations, losses, ffn_loss_output_act (outputs to probabilities)
 *   init.h, rng.h  initialisers, the counter-based generator
 *   optim.h        optimizers and learning-rate schedules
 *   data.h         datasets in ffn's HDF5 layout: open, read rows (data_writer.h: write them)
 *   ckpt.h         checkpoints: load, save, latest in a directory
 *   comm.h         MPI start-up (a single process needs no mpirun) and collectives
 *   step.h         one training step over all ranks: begin, micro-batches, finish
 *   eval.h         loss and accuracy over a whole dataset
 * Also installed, usable but still changing: config.h and train.h (ffn-train's
 * flags and whole run), dense.h, distill.h, prune.h, loader.h, sampler.h,
 * mem.h, partition.h, names.h. Internal headers live in src/ and are not
 * installed. */
#ifndef FFN_FFN_H
#define FFN_FFN_H

#include "ffn/version.h"
#include "ffn/status.h"
#include "ffn/act.h"
#include "ffn/init.h"
#include "ffn/rng.h"
#include "ffn/model.h"
#include "ffn/loss.h"
#include "ffn/optim.h"
#include "ffn/data.h"
#include "ffn/ckpt.h"
#include "ffn/comm.h"
#include "ffn/step.h"
#include "ffn/eval.h"

#endif
