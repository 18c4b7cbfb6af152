import ArgumentParser
import EdgeProxy
import Foundation
import OutpostConfig

/// `outpost check-config` (as `nginx -t`): reads the file and the flags exactly as `serve`
/// would, runs the checks `serve` runs at start and on SIGHUP (listen addresses, certificates,
/// the store directory, the admin token rules, the origins' CA file), prints the effective
/// configuration with secrets masked, and exits non-zero with every problem listed.
struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check a configuration as serve would, and print it with secrets masked.",
        discussion: """
            Takes the same flags as serve. Prints the effective configuration (TOML) on stdout,
            each problem on stderr, and exits 1 if there is any (0 otherwise).
            """)

    @OptionGroup var options: ServeOptions

    @Flag(name: .customLong("quiet"), help: "Do not print the configuration, only the verdict.")
    var quiet = false

    func run() throws {
        let collected = options.collect()
        var problems = collected.problems
        if let configuration = collected.configuration {
            problems += ConfigurationCheck.problems(in: configuration)
            if !quiet {
                print(ConfigurationRenderer.render(configuration, tokenSource: collected.tokenSource), terminator: "")
            }
        }
        // The token rules are checked when the token is resolved and again with the others.
        var seen: Set<String> = []
        problems = problems.filter { seen.insert($0).inserted }
        let source = options.config ?? "(defaults and flags)"
        guard problems.isEmpty else {
            var message = "outpost: \(source): \(problems.count) problem\(problems.count == 1 ? "" : "s"):\n"
            for problem in problems { message += "  - \(problem)\n" }
            FileHandle.standardError.write(Data(message.utf8))
            throw ExitCode(1)
        }
        FileHandle.standardError.write(Data("outpost: \(source): the configuration is valid\n".utf8))
    }
}
