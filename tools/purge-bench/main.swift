import CacheStore
import Foundation
import HTTPCaching
import NIOCore

// Measures purges against store size: fills a store with N small objects, M of them tagged
// `bench-tag` (and under the prefix http://bench/tagged/), then times a tag purge, a prefix
// purge and a URL purge. With the URL and tag indexes these cost what the matching objects
// cost, not what the store holds.
//
//   swift run -c release outpost-purge-bench [--objects N] [--tagged M] [--store DIR]

struct Options {
    var objects = 100_000
    var tagged = 100
    var storePath = NSTemporaryDirectory() + "outpost-purge-bench-" + UUID().uuidString

    init(_ commandLine: [String]) {
        var arguments = commandLine.dropFirst().makeIterator()
        while let argument = arguments.next() {
            switch argument {
            case "--objects": objects = Int(arguments.next() ?? "") ?? objects
            case "--tagged": tagged = Int(arguments.next() ?? "") ?? tagged
            case "--store": storePath = arguments.next() ?? storePath
            default:
                print("usage: outpost-purge-bench [--objects N] [--tagged M] [--store DIR]")
                exit(2)
            }
        }
    }
}

let options = Options(CommandLine.arguments)
let objects = options.objects
let tagged = options.tagged
let storePath = options.storePath

func seconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

let store = try CacheStore(
    configuration: StoreConfiguration(path: storePath, maxStoreSize: 8 << 30, syncCommits: false))
let body = ByteBuffer(repeating: 0x61, count: 200)

func put(_ index: Int) async throws {
    let isTagged = index < tagged
    let key = isTagged ? "http://bench/tagged/\(index)" : "http://bench/object/\(index)"
    var fields = [("Cache-Control", "max-age=3600"), ("ETag", "\"\(index)\"")]
    if isTagged { fields.append(("Surrogate-Key", "bench-tag item-\(index)")) }
    let writer = try store.makeObjectWriter(primaryKey: key, secondaryKey: "", varyNames: [])
    try await writer.append(body)
    try await writer.commit(
        response: StoredResponse(status: 200, headers: HeaderFields(fields), requestTime: 1, responseTime: 1),
        requestHeaders: HeaderFields(), storedAt: 1)
}

let fillStart = ContinuousClock.now
try await withThrowingTaskGroup(of: Void.self) { group in
    let lanes = 256
    for lane in 0..<lanes {
        group.addTask {
            var index = lane
            while index < objects {
                try await put(index)
                index += lanes
            }
        }
    }
    try await group.waitForAll()
}
print("filled \(objects) objects (\(tagged) tagged) in \(String(format: "%.1f", seconds(since: fillStart))) s")

// A purge syncs the store to disk before it answers; the first one also writes out the
// whole fill (commits were not synced), so it is timed on its own.
var start = ContinuousClock.now
_ = try await store.purge(Purge(.tags(["warm-up"]), time: 2))
print("first purge (writes the fill to disk): \(String(format: "%.1f", seconds(since: start) * 1000)) ms")

// Half the tagged objects by single-tag purges, the rest by one tag purge, then a prefix
// and a URL purge.
let half = tagged / 2
start = ContinuousClock.now
var purged = 0
for index in 0..<half { purged += try await store.purge(Purge(.tags(["item-\(index)"]), time: 2)) }
let perTag = seconds(since: start) / Double(max(1, half))
print("tag purge: \(purged) objects by \(half) single-tag purges, \(String(format: "%.3f", perTag * 1000)) ms each")

start = ContinuousClock.now
purged = try await store.purge(Purge(.tags(["bench-tag"]), time: 2))
print(
    "tag purge of every remaining tagged object: \(purged) objects in \(String(format: "%.3f", seconds(since: start) * 1000)) ms"
)

start = ContinuousClock.now
purged = try await store.purge(Purge(.prefix("http://bench/object/1234"), time: 2))
print("prefix purge: \(purged) objects in \(String(format: "%.3f", seconds(since: start) * 1000)) ms")

start = ContinuousClock.now
purged = try await store.purge(Purge(.url("http://bench/object/\(objects - 1)"), time: 2))
print("URL purge: \(purged) object in \(String(format: "%.3f", seconds(since: start) * 1000)) ms")

start = ContinuousClock.now
purged = try await store.purge(Purge(.tags(["no-such-tag"]), time: 2))
print("tag purge matching nothing: \(String(format: "%.3f", seconds(since: start) * 1000)) ms")
store.close()
try? FileManager.default.removeItem(atPath: storePath)
