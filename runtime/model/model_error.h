// The exception every model-reading failure throws: one line saying what was wrong and with which values.
#pragma once

#include <stdexcept>
#include <string>

namespace moe {

class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace moe
