import Foundation
import OutpostTestSupport

/// `outpost serve` as a child process (to kill with SIGKILL, signal, or run the CLI beside).
///
/// Starting it blocks on reading its first line and stopping it blocks on its exit, so both
/// happen on a Dispatch thread: a test that blocked one of the concurrency pool's threads
/// (two on a two-core CI machine) would stall every other test running beside it.
final class OutpostProcess: Sendable {
    let process: ChildProcess
    let port: Int
    let adminPort: Int
    /// The TLS listener's port, when `server.tls_listen` is set.
    let tlsPort: Int?

    /// `outpost serve` with this origin and store, listening on free loopback ports.
    static func start(origin: String, store: String) async throws -> OutpostProcess {
        try await start(arguments: [
            "serve", "--origin", origin, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--store", store,
            "--log-level", "error",
        ])
    }

    /// `outpost serve --config FILE` with these variables added to the environment.
    static func start(config: String, environment: [String: String]) async throws -> OutpostProcess {
        try await start(arguments: ["serve", "--config", config], environment: environment)
    }

    /// Starts `outpost` with these arguments and reads both bound ports back from its first line.
    /// - Parameters:
    ///   - openFiles: run it under `prlimit` with this open-file limit (soft and hard).
    ///   - fileSizeLimit: run it under `prlimit` with this file-size limit in bytes (a file
    ///     cannot grow past it: a full disk for the store's data file).
    static func start(
        arguments: [String], environment: [String: String] = [:], openFiles: Int? = nil, fileSizeLimit: Int? = nil,
        cpus: String? = nil, stderrFile: String? = nil
    ) async throws -> OutpostProcess {
        try await onDispatchThread {
            try OutpostProcess(
                arguments: arguments, environment: environment, openFiles: openFiles, fileSizeLimit: fileSizeLimit,
                cpus: cpus, stderr: stderrFile.map { .file($0) } ?? .null)
        }
    }

    /// `cpus`: run it under `taskset -c` with this CPU list.
    private init(
        arguments: [String], environment: [String: String], openFiles: Int?, fileSizeLimit: Int?, cpus: String?,
        stderr: ChildProcess.Stream
    ) throws {
        var command = [try outpostExecutable().path] + arguments
        var limits: [String] = []
        if let openFiles { limits.append("--nofile=\(openFiles):\(openFiles)") }
        if let fileSizeLimit { limits.append("--fsize=\(fileSizeLimit):\(fileSizeLimit)") }
        if !limits.isEmpty { command = ["/usr/bin/prlimit"] + limits + ["--"] + command }
        if let cpus { command = ["/usr/bin/taskset", "-c", cpus] + command }
        let process = try ChildProcess(
            command[0], Array(command.dropFirst()),
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 }, stdout: .pipe,
            stderr: stderr)
        // "outpost listening on http://127.0.0.1:PORT (admin http://127.0.0.1:PORT)"
        var line = Data()
        let handle = process.output!
        while !line.contains(UInt8(ascii: "\n")) {
            let byte = handle.readData(ofLength: 1)
            if byte.isEmpty { throw CrashTestError("outpost exited before listening") }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        let ports = text.components(separatedBy: "127.0.0.1:").dropFirst().compactMap { Int($0.prefix { $0.isNumber }) }
        guard ports.count >= 2 else { throw CrashTestError("unexpected first line: \(text)") }
        self.process = process
        self.port = ports[0]
        self.adminPort = ports[1]
        self.tlsPort = ports.count > 2 ? ports[2] : nil
    }

    /// SIGKILL and wait for the exit.
    func kill9() async {
        await Self.onDispatchThread {
            self.process.signal(SIGKILL)
            _ = self.process.waitForExit()
        }
    }

    /// SIGTERM and wait for the exit.
    func stop() async {
        await Self.onDispatchThread {
            self.process.signal(SIGTERM)
            _ = self.process.waitForExit()
        }
    }

    /// Waits for the process to exit by itself; its exit status.
    func exitStatus() async -> Int32 {
        await Self.onDispatchThread {
            _ = self.process.waitForExit()
        }
        return process.waitForExit()
    }

    /// Sends a signal without waiting; for a test's clean-up after a failure, where nothing
    /// may be awaited (a `defer`).
    func terminateWithoutWaiting() { process.signal(SIGTERM) }

    func signal(_ number: Int32) { process.signal(number) }

    /// The process's resident memory, bytes (VmRSS).
    var residentBytes: Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(process.pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]).map { $0 * 1024 }
    }

    private static func onDispatchThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
        }
    }

    private static func onDispatchThread(_ work: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                work()
                continuation.resume()
            }
        }
    }
}
