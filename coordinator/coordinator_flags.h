// The moe-coordinator command line (CLI11): every flag also read from a MOE_<FLAG> environment variable.
#pragma once

#include <CLI/CLI.hpp>

#include "coordinator/coordinator_config.h"

namespace moe {

// Adds the flags to `app`, writing into `config`. Call finish_coordinator_config after app.parse().
void add_coordinator_flags(CLI::App& app, CoordinatorConfig& config);
// Checks the combination (exactly one model, lease > heartbeat, ...); throws CLI::ValidationError.
void finish_coordinator_config(CoordinatorConfig& config);

}  // namespace moe
