/// One `[[server.certificates]]` entry: where its files are and which host names it serves.
public struct CertificateFiles: Sendable, Equatable {
    /// `cert`: a PEM file holding the chain, leaf first.
    public var cert: String
    /// `key`: the PEM file of the leaf's private key.
    public var key: String
    /// `hosts`: the SNI names it answers (`*.example.com` matches one label); nil: the
    /// certificate's own DNS names.
    public var hosts: [String]?

    public init(cert: String, key: String, hosts: [String]? = nil) {
        self.cert = cert
        self.key = key
        self.hosts = hosts
    }
}

/// `log.format`: how the access log writes each request.
public enum LogFormat: String, Sendable, Equatable, CaseIterable {
    /// One line of `key=value` metadata (swift-log's stream handler).
    case text
    /// One JSON object per line, for an ingestion pipeline.
    case json
}
