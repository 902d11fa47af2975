// The --cluster-token flag (env MOE_CLUSTER_TOKEN) of every moectl command that talks to a cluster: the
// coordinator checks it on control requests, workers started with --cluster-token on forwards.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace moe::cli {

inline CLI::Option* add_cluster_token_flag(CLI::App* cmd, std::string& token) {
  return cmd
      ->add_option("--cluster-token", token,
                   "the cluster's token (the coordinator's control requests; forwards to workers started with "
                   "--cluster-token)")
      ->envname("MOE_CLUSTER_TOKEN");
}

}  // namespace moe::cli
