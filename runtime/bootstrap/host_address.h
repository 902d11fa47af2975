// The address other hosts reach this one on: what a daemon started by mpirun listens on when its
// --listen is not given.
#pragma once

#include <string>

namespace moe {

// The IPv4 address of the first interface that is up and not loopback, in the order getifaddrs lists
// them; "127.0.0.1" when there is none. Pass --listen to choose another.
std::string host_address();

}  // namespace moe
