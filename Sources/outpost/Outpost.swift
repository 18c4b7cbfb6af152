import ArgumentParser
import Foundation
import NIOCore
import NIOPosix

/// The process entry point: NIO's event loops become Swift concurrency's global executor
/// before anything else runs, so the request path does not hop between thread pools.
@main
enum Main {
    static func main() async {
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
        subcommands: [Serve.self, Inspect.self, PurgeCommand.self])
}
