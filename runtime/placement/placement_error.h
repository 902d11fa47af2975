// The exception of placement planning and (de)serialisation: one line naming what was wrong and the values.
#pragma once

#include <stdexcept>
#include <string>

namespace moe {

class PlacementError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace moe
