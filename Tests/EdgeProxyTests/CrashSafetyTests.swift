import Foundation
import NIOConcurrencyHelpers
import Testing

/// The `outpost` executable built next to this test bundle.
func outpostExecutable() throws -> URL {
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var directory = bundle.deletingLastPathComponent()
    // swift-testing on Linux runs the .xctest binary directly; on other layouts walk up.
    for _ in 0..<3 {
        let candidate = directory.appendingPathComponent("outpost")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        directory = directory.deletingLastPathComponent()
    }
    throw CrashTestError("the outpost executable was not found beside \(bundle.path); run `swift build` first")
}

struct CrashTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `outpost serve` as a child process (to kill with SIGKILL, signal, or run the CLI beside).
final class OutpostProcess: Sendable {
    let process: Process
    let port: Int
    let adminPort: Int

    convenience init(origin: String, store: String) throws {
        try self.init(arguments: [
            "serve", "--origin", origin, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--store", store,
            "--log-level", "error",
        ])
    }

    /// Starts `outpost` with these arguments (and these variables added to the environment)
    /// and reads both bound ports back from its first line.
    /// - Parameters:
    ///   - openFiles: run it under `prlimit` with this open-file limit (soft and hard).
    ///   - fileSizeLimit: run it under `prlimit` with this file-size limit in bytes (a file
    ///     cannot grow past it: a full disk for the store's data file).
    init(
        arguments: [String], environment: [String: String] = [:], openFiles: Int? = nil, fileSizeLimit: Int? = nil
    ) throws {
        let process = Process()
        var limits: [String] = []
        if let openFiles { limits.append("--nofile=\(openFiles):\(openFiles)") }
        if let fileSizeLimit { limits.append("--fsize=\(fileSizeLimit):\(fileSizeLimit)") }
        if !limits.isEmpty {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
            process.arguments = limits + ["--", try outpostExecutable().path] + arguments
        } else {
            process.executableURL = try outpostExecutable()
            process.arguments = arguments
        }
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // "outpost listening on http://127.0.0.1:PORT (admin http://127.0.0.1:PORT)"
        var line = Data()
        let handle = output.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")) {
            let byte = handle.readData(ofLength: 1)
            if byte.isEmpty { throw CrashTestError("outpost exited before listening") }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        let ports = text.components(separatedBy: "127.0.0.1:").dropFirst().compactMap { Int($0.prefix { $0.isNumber }) }
        guard ports.count == 2 else { throw CrashTestError("unexpected first line: \(text)") }
        self.process = process
        self.port = ports[0]
        self.adminPort = ports[1]
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func terminate() {
        process.terminate()
        process.waitUntilExit()
    }
}

@Suite("EdgeProxy: crash safety")
struct CrashSafetyTests {
    @Test("kill -9 while 40 clients fill the store with 2 MB objects: after restart every object is byte-identical")
    func killNineWhileWriting() async throws {
        let objectCount = 80
        let size = 2_000_000
        let served = NIOLockedValueBox(0)
        let objects = (0..<objectCount).map { testBytes(size, seed: $0) }
        let origin = try await TestOrigin.start { request in
            let index = Int(request.path.split(separator: "/").last ?? "") ?? 0
            served.withLockedValue { $0 += 1 }
            return OriginResponse(
                headers: [("Cache-Control", "max-age=3600")], bytes: objects[index % objectCount], pieces: 16)
        }
        let store = NSTemporaryDirectory() + "outpost-crash-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: store) }
        let client = TestClient()

        let first = try OutpostProcess(origin: origin.url, store: store)
        let fill = Task {
            await withTaskGroup(of: Void.self) { group in
                for clientIndex in 0..<40 {
                    group.addTask {
                        for index in stride(from: clientIndex, to: objectCount, by: 40) {
                            _ = try? await client.get(
                                "http://127.0.0.1:\(first.port)/obj/\(index)", [("Host", "crash.test")])
                        }
                    }
                }
            }
        }
        // Kill in the middle of the writes: some objects are complete, many are in flight.
        #expect(try await eventually(timeout: .seconds(60)) { served.withLockedValue { $0 } >= 50 })
        first.kill9()
        await fill.value

        let second = try OutpostProcess(origin: origin.url, store: store)
        var hits = 0
        for index in 0..<objectCount {
            let response = try await client.get(
                "http://127.0.0.1:\(second.port)/obj/\(index)", [("Host", "crash.test")])
            #expect(response.status == 200)
            #expect(response.body == objects[index], "object \(index) is torn")
            if response.isHit { hits += 1 }
        }
        // And once more, now every object must come from the store intact.
        for index in 0..<objectCount {
            let response = try await client.get(
                "http://127.0.0.1:\(second.port)/obj/\(index)", [("Host", "crash.test")])
            #expect(response.isHit)
            #expect(response.body == objects[index], "object \(index) is torn on the hit")
        }
        second.terminate()
        #expect(second.process.terminationStatus == 0)
        await client.shutdown()
        await origin.stop()
        print("crash test: \(hits) of \(objectCount) objects survived the kill as hits")
    }
}
