import Foundation
import NIOPosix

/// A real PostgreSQL server for the purge journal's tests, from Debian's `postgresql`
/// package (`tools/deps --tests` installs it): initialised into a temporary directory and
/// started on a free loopback port. As root (CI), its programs run as the `postgres` user,
/// since PostgreSQL refuses to run as root.
final class TestPostgres: Sendable {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static let user = "outpost"
    static let password = "journal-test"
    let directory: String
    let port: Int
    let binaries: String

    /// The journal's URL (SCRAM password authentication over TCP).
    var url: String { "postgres://\(Self.user):\(Self.password)@127.0.0.1:\(port)/journal" }

    private init(directory: String, port: Int, binaries: String) {
        self.directory = directory
        self.port = port
        self.binaries = binaries
    }

    /// Initialises, starts, and creates the `journal` database.
    static func start() async throws -> TestPostgres {
        let binaries = try findBinaries()
        // /tmp rather than $TMPDIR: the server runs as `postgres` under root, and must reach it
        // (a TMPDIR under /root would not do), and its socket path must stay short.
        let directory = "/tmp/outpost-pg-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data((password + "\n").utf8).write(to: URL(fileURLWithPath: directory + "/pw"))
        if geteuid() == 0 {
            _ = try await run("/bin/chown", ["-R", "postgres:postgres", directory])
        }
        let server = TestPostgres(directory: directory, port: try await freePort(), binaries: binaries)
        _ = try await server.asServerUser(
            binaries + "/initdb",
            [
                "-D", directory + "/data", "-U", user, "--pwfile=" + directory + "/pw", "-A", "scram-sha-256",
                "--auth-local=trust", "-E", "UTF8", "--no-locale", "--no-sync",
            ])
        try await server.startServer()
        _ = try await server.sql("CREATE DATABASE journal", database: "postgres")
        return server
    }

    /// Starts the server (again) on its port.
    func startServer() async throws {
        _ = try await asServerUser(
            binaries + "/pg_ctl",
            [
                "-D", directory + "/data", "-l", directory + "/server.log", "-w", "-o",
                "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c fsync=off", "start",
            ])
    }

    /// Stops it (fast: open connections are closed).
    func stopServer() async throws {
        _ = try await asServerUser(binaries + "/pg_ctl", ["-D", directory + "/data", "-m", "fast", "-w", "stop"])
    }

    /// Stops it if running and removes its files.
    func destroy() async {
        _ = try? await asServerUser(binaries + "/pg_ctl", ["-D", directory + "/data", "-m", "immediate", "-w", "stop"])
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs one statement with psql; its rows, one per line, columns separated by `|`.
    func sql(_ statement: String, database: String = "journal") async throws -> String {
        try await Self.run(
            "/usr/bin/psql",
            [
                "postgresql://\(Self.user):\(Self.password)@127.0.0.1:\(port)/\(database)", "-v", "ON_ERROR_STOP=1",
                "-At", "-c", statement,
            ]
        ).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func asServerUser(_ program: String, _ arguments: [String]) async throws -> String {
        geteuid() == 0
            ? try await Self.run("/usr/sbin/runuser", ["-u", "postgres", "--", program] + arguments)
            : try await Self.run(program, arguments)
    }

    /// The server's programs: `PG_BINDIR`, else the newest /usr/lib/postgresql/*/bin.
    private static func findBinaries() throws -> String {
        if let configured = ProcessInfo.processInfo.environment["PG_BINDIR"] { return configured }
        let root = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        guard
            let newest = versions.compactMap(Int.init).sorted().last(where: {
                FileManager.default.isExecutableFile(atPath: "\(root)/\($0)/bin/initdb")
            })
        else {
            throw Failure(
                description:
                    "PostgreSQL's server programs are not installed: run tools/deps --tests (Debian's postgresql)")
        }
        return "\(root)/\(newest)/bin"
    }

    /// A port nothing listens on: bound, read back, released.
    private static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        return port
    }

    /// Runs a program to its end; its output (stdout and stderr, through a file), or a
    /// ``Failure`` with it. posix_spawn and waitpid rather than Foundation's Process, which
    /// waits for every holder of its descriptors to go: `pg_ctl start` leaves the server
    /// running behind it.
    /// On a thread of its own: waiting for a program must not hold one of the few threads
    /// every test's tasks share.
    @discardableResult
    private static func run(_ program: String, _ arguments: [String]) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try runBlocking(program, arguments) }) }.start()
        }
    }

    /// glibc's posix_spawn_file_actions_addclosefrom_np, which Swift's Glibc module does not
    /// declare (it is a GNU extension).
    private static let addCloseFrom:
        (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
            guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
            return unsafeBitCast(
                symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
        }()

    private static func runBlocking(_ program: String, _ arguments: [String]) throws -> String {
        let log = FileManager.default.temporaryDirectory.path + "/outpost-pg-run-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: log) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else of this process goes with it: a server that held a test's listening
        // socket would keep its port answering after the test closed it.
        guard let closeFrom = Self.addCloseFrom else {
            throw Failure(description: "posix_spawn_file_actions_addclosefrom_np is missing (glibc 2.34 or later)")
        }
        closeFrom(&actions, 3)
        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, program, &actions, nil, argv, environ)
        guard spawned == 0 else { throw Failure(description: "cannot run \(program): error \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        // Exited normally with status 0 (WIFEXITED and WEXITSTATUS, spelled out).
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw Failure(description: "\(program) \(arguments.joined(separator: " ")) failed (\(status)): \(output)")
        }
        return output
    }
}
