import OutpostConfig

/// Writes the configuration file of an `outpost serve` process for a test: loopback listeners
/// on ports the kernel picks, `origin` as the default origin, the store at `store` without
/// fsync, quiet logs unless `log` says otherwise.
/// - Parameters:
///   - server: more lines of `[server]` (`tls_listen = …`).
///   - log: the lines of `[log]`.
///   - tables: tables appended after the others (`[[server.certificates]]`, `[http2]`).
///   - tag: a comment on the first line (so that a rewritten file differs).
func writeNodeConfig(
    _ path: String, origin: String, store: String, server: [String] = [],
    log: [String] = ["level = \"error\"", "access = false"], tables: String = "", tag: String = ""
) throws {
    let text = """
        # \(tag)
        [server]
        listen = "127.0.0.1:0"
        \(server.map { $0 + "\n" }.joined())[upstream]
        default = "\(origin)"
        [store]
        path = "\(store)"
        sync_commits = false
        [admin]
        listen = "127.0.0.1:0"
        [log]
        \(log.map { $0 + "\n" }.joined())\(tables)
        """
    try text.write(toFile: path, atomically: true, encoding: .utf8)
}

/// `[[server.certificates]]` for these files.
func certificateTable(_ files: CertificateFiles) -> String {
    "[[server.certificates]]\ncert = \"\(files.cert)\"\nkey = \"\(files.key)\"\n"
}
