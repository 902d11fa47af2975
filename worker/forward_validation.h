// Checks a forwardRequest against the model before it is queued: layer, hidden size, dtype, the tokens
// blob size, the parallel lists, token rows and expert ids. Cheap (one pass over the assignment lists,
// the tokens blob is not read), so it runs on the io thread.
#pragma once

#include "runtime/model/model_spec.h"
#include "worker/forward_job.h"

namespace moe {

// Fills job's request fields from job.frame. Throws ServiceError: unknownLayer for a layer that is not
// an MoE layer; badRequest for a hidden size other than the model's, an unknown dtype, a tokens blob
// whose size is not numTokens * hidden * dtype size, lists of different lengths, a token index outside
// [0, numTokens) or an expert id outside the layer's experts. Messages name the field, expected, got.
void validate_forward_request(const ModelSpec& spec, ForwardJob& job);

}  // namespace moe
