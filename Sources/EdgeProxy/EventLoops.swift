import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The event loops that serve connections (`server.event_loops`). SwiftNIO's shared group has
/// one loop per core of the machine (or of a cgroup CPU quota), whatever CPUs the process is
/// allowed: pinned to one CPU with `taskset` or systemd's `CPUAffinity=`, two loops would only
/// take turns on it, each with half the connections. Like nginx's `worker_processes auto`,
/// Outpost counts the CPUs of its affinity mask instead.
enum EventLoops {
    /// The loop count for a `server.event_loops` value (0: automatic).
    static func count(configured: Int) -> Int {
        if configured > 0 { return configured }
        return max(1, min(System.coreCount, affinityCount() ?? System.coreCount))
    }

    /// A group of `count` loops (``count(configured:)``): NIO's shared group when it has that
    /// many, else one made for the count and kept for the life of the process (as the shared
    /// group is), so servers started again in one process (tests, a restart in place) share it.
    static func group(loops count: Int) -> MultiThreadedEventLoopGroup {
        if count == System.coreCount { return .singleton }
        return groups.withLockedValue { groups in
            if let group = groups[count] { return group }
            let group = MultiThreadedEventLoopGroup(numberOfThreads: count)
            groups[count] = group
            return group
        }
    }

    private static let groups = NIOLockedValueBox<[Int: MultiThreadedEventLoopGroup]>([:])

    /// The CPUs this process may run on: its affinity mask, as the kernel lists it in
    /// /proc/self/status (`Cpus_allowed_list`, what sched_getaffinity(2) returns); nil where
    /// that cannot be read.
    static func affinityCount() -> Int? {
        #if os(Linux)
        let descriptor = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            bytes += chunk[..<count]
        }
        let status = String(decoding: bytes, as: UTF8.self)
        for line in status.split(separator: "\n") where line.hasPrefix("Cpus_allowed_list:") {
            return cpuCount(list: line.dropFirst("Cpus_allowed_list:".count))
        }
        return nil
        #else
        return nil
        #endif
    }

    /// The CPUs in a kernel CPU list ("0-3,8,10-11": 7); nil if it is not one.
    static func cpuCount(list: Substring) -> Int? {
        var total = 0
        for item in list.split(separator: ",") {
            let bounds = item.filter { $0 != " " && $0 != "\t" }.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 1 || bounds.count == 2, let low = Int(bounds[0]),
                let high = Int(bounds[bounds.count - 1]),
                low >= 0, high >= low
            else { return nil }
            total += high - low + 1
        }
        return total > 0 ? total : nil
    }
}
