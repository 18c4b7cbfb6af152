import ArgumentParser
import Foundation
import NIOCore
import NIOPosix

/// The process entry point: NIO's event loops become Swift concurrency's global executor
/// before anything else runs, so the request path does not hop between thread pools.
@main
enum Main {
    static func main() async {
        // One event loop per CPU this process may run on: `taskset -c 0 outpost serve` gets one
        // loop, not one per core of the machine sharing the one it has.
        if let cpus = CPUAffinity.count() { NIOSingletons.groupLoopCountSuggestion = cpus }
        let installed = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        if ProcessInfo.processInfo.environment["OUTPOST_DEBUG_EXECUTOR"] != nil {
            print("executor takeover: \(installed)")
        }
        await Outpost.main()
    }
}

struct Outpost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outpost",
        abstract: "Outpost: a caching CDN edge node.",
        subcommands: [Serve.self, CheckConfig.self, Inspect.self, PurgeCommand.self])
}

/// The CPUs the process is allowed on (the `Cpus_allowed` mask of /proc/self/status, which
/// `taskset` and cpusets set), or nil when that cannot be read.
enum CPUAffinity {
    static func count() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") })
        else { return nil }
        let cpus = line.dropFirst("Cpus_allowed:".count).reduce(0) { count, digit in
            count + (digit.hexDigitValue?.nonzeroBitCount ?? 0)
        }
        return cpus > 0 ? cpus : nil
    }
}
