#pragma once
// The lra version and the git commit it was built from (refreshed at every build).
#include <string>

namespace lra::core {

std::string version();
std::string git_commit();

}  // namespace lra::core
