// pm_users: adds, replaces or removes a user of the gateway's users file.
//
//   pm_users --users_file=certs/dev/users add demo < password.txt
//   pm_users --users_file=certs/dev/users --password_file=pw add demo
//   pm_users --users_file=certs/dev/users --admin add root < password.txt
//   pm_users --users_file=certs/dev/users remove demo
//
// A user sees and acts on only the processes it started; --admin makes one
// that sees and acts on every process.
//
// The password is read from --password_file or standard input (its first
// line), never from the command line, where `ps` would show it. The file is
// replaced atomically, mode 0600; a running gateway picks the change up.
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <iostream>
#include <string>

#include <gflags/gflags.h>

#include "common/status.h"
#include "gateway/users.h"

DEFINE_string(users_file, "", "The users file to change (created if missing)");
DEFINE_string(password_file, "",
              "File whose first line is the password (default: standard input)");
DEFINE_bool(admin, false,
            "With add: the user sees and acts on every process, not only "
            "the ones it started");
DEFINE_uint32(iterations, pm::gateway::kDefaultIterations,
              "PBKDF2-HMAC-SHA256 iterations for the new hash");

namespace {

absl::StatusOr<std::string> ReadPassword() {
  std::string line;
  if (FLAGS_password_file.empty()) {
    if (!std::getline(std::cin, line)) {
      return absl::InvalidArgumentError("no password on standard input");
    }
  } else {
    FILE* f = fopen(FLAGS_password_file.c_str(), "re");
    if (f == nullptr) return pm::ErrnoError("open", FLAGS_password_file);
    char buffer[1024];
    if (fgets(buffer, sizeof(buffer), f) != nullptr) line = buffer;
    fclose(f);
  }
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
    line.pop_back();
  }
  if (line.empty()) return absl::InvalidArgumentError("empty password");
  return line;
}

absl::Status Run(const std::string& command, const std::string& user) {
  if (FLAGS_users_file.empty()) {
    return absl::InvalidArgumentError("--users_file is required");
  }
  PM_RETURN_IF_ERROR(pm::gateway::ValidateUserName(user));
  pm::gateway::UserTable users;
  if (access(FLAGS_users_file.c_str(), F_OK) == 0) {
    PM_ASSIGN_OR_RETURN(users, pm::gateway::ReadUsersFile(FLAGS_users_file));
  }
  if (command == "add") {
    PM_ASSIGN_OR_RETURN(std::string password, ReadPassword());
    PM_ASSIGN_OR_RETURN(users[user].hash,
                        pm::gateway::HashPassword(password, FLAGS_iterations));
    users[user].admin = FLAGS_admin;
  } else if (command == "remove") {
    if (users.erase(user) == 0) {
      return absl::NotFoundError("no user \"" + user + "\" in " + FLAGS_users_file);
    }
  } else {
    return absl::InvalidArgumentError("unknown command \"" + command +
                                      "\" (want add or remove)");
  }
  return pm::gateway::WriteUsersFile(FLAGS_users_file, users);
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "pm_users --users_file=FILE [--password_file=F] [--admin] add USER | "
      "remove USER");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (argc != 3) {
    fprintf(stderr, "usage: %s\n", gflags::ProgramUsage());
    return 2;
  }
  absl::Status status = Run(argv[1], argv[2]);
  if (!status.ok()) {
    fprintf(stderr, "pm_users: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
