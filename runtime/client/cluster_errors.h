// The errors a ClusterClient's forward call throws (see cluster_client.h for when): ClusterError, and
// its kinds ClusterDeadlineError and ClusterUnavailableError (which names the experts without a replica).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/core/expert_types.h"

namespace moe {

class ClusterError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ClusterDeadlineError : public ClusterError {
 public:
  using ClusterError::ClusterError;
};

// Experts of the call have no replica in the placement (the cluster lacks the capacity, or lost them).
class ClusterUnavailableError : public ClusterError {
 public:
  ClusterUnavailableError(const std::string& message, std::vector<ExpertKey> experts)
      : ClusterError(message), experts_(std::move(experts)) {}
  const std::vector<ExpertKey>& experts() const { return experts_; }

 private:
  std::vector<ExpertKey> experts_;
};

}  // namespace moe
