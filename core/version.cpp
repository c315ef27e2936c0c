#include "core/version.h"

#include "lra_version.h"

namespace lra::core {

std::string version() { return LRA_VERSION; }
std::string git_commit() { return LRA_GIT_COMMIT; }

}  // namespace lra::core
