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

        let first = try await OutpostProcess.start(origin: origin.url, store: store)
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
        await first.kill9()
        await fill.value

        let second = try await OutpostProcess.start(origin: origin.url, store: store)
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
        await second.stop()
        #expect(second.process.waitForExit() == 0)
        await client.shutdown()
        await origin.stop()
        print("crash test: \(hits) of \(objectCount) objects survived the kill as hits")
    }
}
