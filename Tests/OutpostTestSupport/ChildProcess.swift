import Foundation

/// A program run by the tests, with posix_spawn rather than Foundation's `Process`.
///
/// Why not `Process`: on Linux it lists /proc/self/fd before each spawn and copies every
/// entry's whole 256-byte `d_name` out of readdir's buffer; with a thousand or more
/// descriptors open (many tests side by side) the last entry sits at the buffer's end and
/// the copy reads past it: the test process died of SIGSEGV in CI that way. Here the child
/// keeps only its standard streams (`posix_spawn_file_actions_addclosefrom_np`), so it holds
/// none of the tests' sockets either.
public final class ChildProcess: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// Where a standard stream of the child goes.
    public enum Stream {
        case null
        /// A pipe whose other end this object keeps (``input``, ``output``, ``errors``).
        case pipe
        /// A file, created or truncated.
        case file(String)
        /// Wherever stdout goes (for stderr: `2>&1`).
        case stdout
    }

    public let pid: pid_t
    /// This end of the child's stdin, stdout and stderr, when they are ``Stream/pipe``.
    public let input: FileHandle?
    public let output: FileHandle?
    public let errors: FileHandle?

    private let lock = NSLock()
    private var status: Int32?

    public init(
        _ program: String, _ arguments: [String], environment: [String: String]? = nil, stdin: Stream = .null,
        stdout: Stream = .null, stderr: Stream = .null
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var childEnds: [Int32] = []
        defer { for fd in childEnds { close(fd) } }
        var parentEnds: [FileHandle?] = []
        for (fd, stream) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
            switch stream {
            case .null:
                posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
                parentEnds.append(nil)
            case .file(let path):
                posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                parentEnds.append(nil)
            case .stdout:
                posix_spawn_file_actions_adddup2(&actions, 1, fd)
                parentEnds.append(nil)
            case .pipe:
                var ends: [Int32] = [-1, -1]
                // Close-on-exec, so that no other child started meanwhile holds them (Glibc's
                // module has no pipe2).
                guard pipe(&ends) == 0 else { throw Failure("pipe failed: errno \(errno)") }
                for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
                let (childEnd, parentEnd) = fd == 0 ? (ends[0], ends[1]) : (ends[1], ends[0])
                childEnds.append(childEnd)
                posix_spawn_file_actions_adddup2(&actions, childEnd, fd)
                parentEnds.append(FileHandle(fileDescriptor: parentEnd, closeOnDealloc: true))
            }
        }
        guard let closeFrom = Self.addCloseFrom else {
            throw Failure("posix_spawn_file_actions_addclosefrom_np is missing (glibc 2.34 or later)")
        }
        _ = closeFrom(&actions, 3)
        let environment = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, program, &actions, nil, argv, envp)
        guard spawned == 0 else { throw Failure("cannot run \(program): error \(spawned)") }
        self.pid = pid
        (input, output, errors) = (parentEnds[0], parentEnds[1], parentEnds[2])
    }

    /// Blocks until the child has exited; its exit status, or 128 + the signal that ended it
    /// (as a shell reports it). Safe to call more than once and from several threads.
    @discardableResult
    public func waitForExit() -> Int32 {
        lock.lock()
        defer { lock.unlock() }
        if let status { return status }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) == -1 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (Glibc's are macros).
        let result = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        status = result
        return result
    }

    /// Whether the child is still running (it is reaped if it has just exited).
    public var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        guard status == nil else { return false }
        var raw: Int32 = 0
        guard waitpid(pid, &raw, WNOHANG) == pid else { return true }
        status = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        return false
    }

    /// Sends a signal (nothing once the child has been reaped: its pid may be someone else's).
    public func signal(_ number: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if status == nil { kill(pid, number) }
    }

    /// Runs a program to its end with `input` on stdin; its exit status and stdout and stderr.
    /// The input is written on another thread so that a full stdout pipe cannot deadlock it.
    public static func run(
        _ program: String, _ arguments: [String], environment: [String: String]? = nil, input: [UInt8]? = nil
    ) throws -> (status: Int32, stdout: [UInt8], stderr: [UInt8]) {
        let child = try ChildProcess(
            program, arguments, environment: environment, stdin: input == nil ? .null : .pipe, stdout: .pipe,
            stderr: .pipe)
        if let input, let handle = child.input {
            Thread {
                try? handle.write(contentsOf: input)
                try? handle.close()
            }.start()
        }
        let (stdout, stderr) = child.readToEnd()
        return (child.waitForExit(), stdout, stderr)
    }

    /// ``run(_:_:environment:input:)`` waited for on a Dispatch thread. A test whose child talks
    /// to a server in the test process must not block one of the concurrency pool's few threads
    /// while it waits: the server's asynchronous work (a miss, a pass) runs on them, and two
    /// such tests at once on a two-core machine left none for it.
    public static func runDetached(
        _ program: String, _ arguments: [String], environment: [String: String]? = nil, input: [UInt8]? = nil
    ) async throws -> (status: Int32, stdout: [UInt8], stderr: [UInt8]) {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(
                    with: Result { try run(program, arguments, environment: environment, input: input) })
            }
        }
    }

    /// Reads stdout and stderr (both ``Stream/pipe``) to their ends: stderr on a thread of its
    /// own, so that a child blocked on a full stderr pipe cannot stall the reading of stdout.
    public func readToEnd() -> (stdout: [UInt8], stderr: [UInt8]) {
        let errors = ReadToEnd(self.errors!)
        let stdout = [UInt8](output!.readDataToEndOfFile())
        return (stdout, errors.wait())
    }

    /// glibc's posix_spawn_file_actions_addclosefrom_np, which Swift's Glibc module does not
    /// declare (it is a GNU extension).
    private static let addCloseFrom:
        (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
            guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
            return unsafeBitCast(
                symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
        }()
}

/// Reads a handle to its end on a thread of its own.
private final class ReadToEnd: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var bytes: [UInt8] = []

    init(_ handle: FileHandle) {
        Thread {
            self.bytes = [UInt8](handle.readDataToEndOfFile())
            self.done.signal()
        }.start()
    }

    func wait() -> [UInt8] {
        done.wait()
        return bytes
    }
}
