// dvmm's command line: parses the arguments with CLI11 and hands over to one file per
// subcommand (cli/run_command.cpp, ...), after reading the VM configuration file under the
// flags (cli/vm_config.hpp). Errors are one line on stderr and a non-zero exit.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/control_commands.hpp"
#include "cli/image_command.hpp"
#include "cli/run_command.hpp"
#include "cli/vm_config.hpp"
#include "cli/vm_name.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "dvmm - a distributed virtual machine monitor: one unmodified Linux guest (RISC-V, on "
      "dvmm's own RV64GC vCPUs) across the nodes of a cluster.",
      "dvmm"};
  app.set_version_flag("--version", std::string("dvmm ") + DVMM_VERSION);
  app.require_subcommand(0, 1);
  app.footer("Run 'dvmm SUBCOMMAND --help' for the options of a subcommand.");

  dvmm::cli::RunOptions run_options;
  CLI::App* run = dvmm::cli::add_run_command(app, run_options);
  CLI::App* node = dvmm::cli::add_node_command(app, run_options);
  dvmm::cli::ControlOptions control_options;
  const std::vector<CLI::App*> control_cmds = dvmm::cli::add_control_commands(app, control_options);
  dvmm::cli::add_image_commands(app);  // runs from its callback

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, then where to look.
    std::string what = e.what();
    for (char& c : what) {
      if (c == '\n') c = ' ';
    }
    const char* sub = run->parsed() || (argc > 1 && std::strcmp(argv[1], "run") == 0) ? "dvmm run"
                      : node->parsed() || (argc > 1 && std::strcmp(argv[1], "node") == 0)
                          ? "dvmm node"
                          : "dvmm";
    std::fprintf(stderr, "dvmm: error: %s\n(run '%s --help' for usage)\n", what.c_str(), sub);
    return dvmm::cli::kExitError;
  }

  if (run->parsed() || node->parsed()) {
    if (!run_options.config_file.empty()) {
      try {
        dvmm::cli::apply_vm_config(run_options.config_file, run_options,
                                   dvmm::cli::flags_given_to(run->parsed() ? *run : *node));
      } catch (const dvmm::cli::ConfigError& e) {
        std::fprintf(stderr, "dvmm: error: %s\n", e.what());
        return dvmm::cli::kExitError;
      }
    }
    if (run_options.name.empty()) run_options.name = dvmm::cli::default_vm_name();
    return dvmm::cli::run_command(run_options);
  }
  for (CLI::App* c : control_cmds) {
    if (c->parsed()) return dvmm::cli::control_command(control_options);
  }
  std::fputs(app.help().c_str(), stdout);
  return 0;
}
