// The services' --log_format flag (common/log.h's layouts): every service
// main calls ApplyLogFlags() right after gflags has parsed its flags.
//
//   gflags::ParseCommandLineFlags(&argc, &argv, true);
//   if (!pm::ApplyLogFlags()) return 2;
#ifndef PM_COMMON_LOG_FLAGS_H_
#define PM_COMMON_LOG_FLAGS_H_

namespace pm {

// Sets the log format --log_format names (or the default: journal when
// stderr is systemd's journal stream, else text). False, after saying why,
// for a value that names none.
bool ApplyLogFlags();

}  // namespace pm

#endif  // PM_COMMON_LOG_FLAGS_H_
