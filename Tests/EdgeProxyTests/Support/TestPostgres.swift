import Foundation
import NIOPosix
import OutpostTestSupport

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
        let initialising = TestPostgres(directory: directory, port: 0, binaries: binaries)
        _ = try await initialising.asServerUser(
            binaries + "/initdb",
            [
                "-D", directory + "/data", "-U", user, "--pwfile=" + directory + "/pw", "-A", "scram-sha-256",
                "--auth-local=trust", "-E", "UTF8", "--no-locale", "--no-sync",
            ])
        // The port was free when it was read back, but another test's listener may take it
        // before the server binds it: then the server exits at start, and another port is
        // tried.
        var attempt = 0
        while true {
            attempt += 1
            let server = TestPostgres(directory: directory, port: try await freePort(), binaries: binaries)
            do {
                try await server.startServer()
            } catch {
                let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
                guard attempt < 4, log.contains("Address already in use") || log.contains("could not bind") else {
                    throw Failure(description: "\(error)\nserver.log:\n\(log)")
                }
                continue
            }
            _ = try await server.sql("CREATE DATABASE journal", database: "postgres")
            return server
        }
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
    /// ``Failure`` with it. Through a file rather than a pipe: `pg_ctl start` leaves the
    /// server running behind it, and a pipe's reader would wait for every holder to go.
    /// On a thread of its own: waiting for a program must not hold one of the few threads
    /// every test's tasks share.
    @discardableResult
    private static func run(_ program: String, _ arguments: [String]) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try runBlocking(program, arguments) }) }.start()
        }
    }

    private static func runBlocking(_ program: String, _ arguments: [String]) throws -> String {
        let log = FileManager.default.temporaryDirectory.path + "/outpost-pg-run-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: log) }
        let status = try ChildProcess(program, arguments, stdout: .file(log), stderr: .stdout).waitForExit()
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw Failure(description: "\(program) \(arguments.joined(separator: " ")) failed (\(status)): \(output)")
        }
        return output
    }
}
