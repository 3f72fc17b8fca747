// The main of a pm_cc_fuzzer binary when libFuzzer is not linked (any
// config but --config=fuzz; see bazel/fuzz.bzl): runs each input once
// through LLVMFuzzerTestOneInput, so the harness builds with gcc and its
// seeds run in `bazel test //...`.
//
//   basic_auth_fuzzer [-libfuzzer_flag=...] FILE_OR_DIR...
//
// Arguments starting with '-' are libFuzzer's flags and are ignored, so
// one command line serves both builds. A directory stands for the files in
// it (not recursively), in name order. Exits non-zero only if an input
// cannot be read; a harness that finds a bug aborts.
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv)
    __attribute__((weak));

namespace {

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The regular files of `dir`, sorted; false if it cannot be listed.
bool ListFiles(const std::string& dir, std::vector<std::string>* files) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return false;
  std::vector<std::string> names;
  while (struct dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (!IsDirectory(dir + "/" + name)) names.push_back(dir + "/" + name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  files->insert(files->end(), names.begin(), names.end());
  return true;
}

bool RunOne(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  const std::string bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()),
                         bytes.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (!arg.empty() && arg[0] == '-') continue;
    if (IsDirectory(arg)) {
      if (!ListFiles(arg, &inputs)) {
        fprintf(stderr, "cannot list %s\n", arg.c_str());
        return 1;
      }
    } else {
      inputs.push_back(arg);
    }
  }
  for (const std::string& input : inputs) {
    if (!RunOne(input)) {
      fprintf(stderr, "cannot read %s\n", input.c_str());
      return 1;
    }
  }
  printf("ran %zu inputs\n", inputs.size());
  return 0;
}
