// The --cluster-token flag (env MOE_CLUSTER_TOKEN) and --cluster-token-file (env MOE_CLUSTER_TOKEN_FILE,
// which keeps the token out of ps) of every moectl command that talks to a cluster: every request carries
// the token; a coordinator or worker started with one refuses requests without it.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "runtime/wire/cluster_auth.h"

namespace moe::cli {

inline CLI::Option* add_cluster_token_flag(CLI::App* cmd, std::string& token) {
  auto* flag = cmd->add_option("--cluster-token", token,
                               "the cluster's token, sent with every request (prefer --cluster-token-file: a flag "
                               "shows in ps)")
                   ->envname("MOE_CLUSTER_TOKEN");
  cmd->add_option_function<std::string>(
         "--cluster-token-file",
         [&token](const std::string& path) {
           try {
             token = read_cluster_token_file(path);
           } catch (const std::exception& e) {
             throw CLI::ValidationError("--cluster-token-file", e.what());
           }
         },
         "file holding the cluster token")
      ->envname("MOE_CLUSTER_TOKEN_FILE")
      ->excludes(flag);
  return flag;
}

}  // namespace moe::cli
