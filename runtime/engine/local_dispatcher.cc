// LocalDispatcher: every assignment on one backend (see local_dispatcher.h).
#include "runtime/engine/local_dispatcher.h"

#include <vector>

#include "runtime/routing/combine.h"

namespace moe {

Matrix LocalDispatcher::dispatch(int32_t layer, const Matrix& x, const std::vector<TokenAssignment>& assignments) {
  Matrix out(x.rows, x.cols);
  if (deterministic_) {
    std::vector<float> rows(assignments.size() * static_cast<size_t>(x.cols));
    if (!assignments.empty()) backend_.forward_rows(layer, x.data.data(), x.rows, x.cols, assignments, rows.data());
    combine_rows(assignments, rows, out);
  } else if (x.rows > 0) {
    backend_.forward(layer, x.data.data(), x.rows, x.cols, assignments, out.data.data());
  }
  return out;
}

}  // namespace moe
