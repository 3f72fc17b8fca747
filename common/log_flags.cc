#include "common/log_flags.h"

#include <gflags/gflags.h>

#include "common/log.h"

DEFINE_string(log_format, "",
              "How log lines look: text, journal (a syslog level prefix, for "
              "journald) or json (one object per line, for log shippers). "
              "Default: journal when stderr is systemd's journal, else text");

namespace pm {

bool ApplyLogFlags() {
  if (FLAGS_log_format.empty()) {
    SetLogFormat(DefaultLogFormat());
    return true;
  }
  absl::StatusOr<LogFormat> format = ParseLogFormat(FLAGS_log_format);
  if (!format.ok()) {
    PM_LOG(ERROR) << "--log_format: " << format.status().message();
    return false;
  }
  SetLogFormat(*format);
  return true;
}

}  // namespace pm
