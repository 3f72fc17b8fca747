// pm-shim --zygote: one pm-shim, started once, that forks the idle shims
// the supervisor keeps ready, instead of the supervisor exec'ing each one.
//
//   // main.cc
//   if (flags.zygote) {
//     PM_ASSIGN_OR_RETURN(std::optional<ShimFlags> become, ServeForks(flags));
//     if (!become) return kExitDone;  // the supervisor let the zygote go
//     flags = *become;                // a forked child: an idle shim now
//   }
//
// An exec of pm-shim costs more than its fork: the kernel's exec, and
// glibc's start-up, which on a VM is mostly CPUID instructions (each one
// traps to the hypervisor; glibc asks the cache sizes through dozens of
// them). The forked shim shares the zygote's pages until it writes them.
//
// Each ForkShim{uuid} with its control link attached is answered with
// ShimForked{pid} and the new shim's pidfd, or SpawnFailed if the fork
// failed (the zygote carries on). The new shim is forked with CLONE_PARENT:
// it is the supervisor's child, as an exec'd one is, so the supervisor
// reaps it and a restarted supervisor finds it the same way; it names
// itself "pm-shim" again (the zygote is "pm-shim-zygote", which the
// supervisor's checks for a live pm-shim do not match).
#ifndef PM_SHIM_ZYGOTE_H_
#define PM_SHIM_ZYGOTE_H_

#include <optional>

#include "absl/status/statusor.h"
#include "shim/shim.h"

namespace pm::shim {

// The zygote's comm (at most 15 characters).
inline constexpr char kZygoteName[] = "pm-shim-zygote";

// Serves ForkShim on flags.control_fd, one at a time. In the zygote:
// nullopt at EOF (the supervisor let it go: exit kExitDone), an error when
// the control fd is unusable. In each forked child: the flags it runs with
// as an idle shim (zygote off, control_fd the link that came with its
// ForkShim, process_id its uuid).
absl::StatusOr<std::optional<ShimFlags>> ServeForks(const ShimFlags& flags);

}  // namespace pm::shim

#endif  // PM_SHIM_ZYGOTE_H_
