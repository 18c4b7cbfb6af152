import EdgeProxy
import Foundation
import HTTPCaching
import Testing

@testable import OutpostConfig

@Suite("EdgeProxy: configuration")
struct ConfigurationTests {
    /// The shipped conf/outpost.toml, found from this source file.
    static var shippedConfiguration: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
            .appendingPathComponent("conf/outpost.toml").path
    }

    @Test("the shipped conf/outpost.toml parses and states the defaults")
    func shippedFileIsTheDefaults() throws {
        let parsed = try ConfigurationLoader.load(path: Self.shippedConfiguration)
        var defaults = OutpostConfiguration()
        defaults.store.path = "./outpost-store"
        #expect(parsed == defaults)
    }

    @Test("a parent tier: upstream.parent, per-Host parents in [upstream.hosts], parent_fallback, cluster.name")
    func parents() throws {
        let configuration = try ConfigurationLoader.parse(
            """
            [upstream]
            default = "http://origin.internal:8081"
            parent = "http://shield.internal:8080"
            parent_fallback = false
            [upstream.hosts]
            "static.example.com" = "https://static-origin:8443"
            "video.example.com" = { origin = "http://video-origin:80", parent = "http://video-shield:8080" }
            [cluster]
            name = "edge-fleet"
            """)
        let upstream = configuration.upstream
        #expect(upstream.parent?.description == "http://shield.internal:8080")
        #expect(upstream.parentFallback == false)
        #expect(upstream.hosts["video.example.com"]?.description == "http://video-origin")
        #expect(configuration.cluster.name == "edge-fleet")
        let key = { (host: String) in CacheKey(scheme: "http", authority: host, pathAndQuery: "/") }
        #expect(upstream.parent(for: key("video.example.com"))?.description == "http://video-shield:8080")
        #expect(upstream.parent(for: key("static.example.com"))?.description == "http://shield.internal:8080")
        #expect(OutpostConfiguration().upstream.parent(for: key("a")) == nil)
        #expect(OutpostConfiguration().upstream.parentFallback && OutpostConfiguration().cluster.name == "outpost")
    }

    @Test("TLS: server.tls_listen, [[server.certificates]] with optional hosts, log.format; each mistake named")
    func tls() throws {
        let configuration = try ConfigurationLoader.parse(
            """
            [server]
            tls_listen = "0.0.0.0:8443"
            [[server.certificates]]
            cert = "/etc/outpost/site.pem"
            key = "/etc/outpost/site.key"
            [[server.certificates]]
            cert = "/etc/outpost/shop.pem"
            key = "/etc/outpost/shop.key"
            hosts = ["Shop.Example", "*.shop.example"]
            [log]
            format = "json"
            """)
        #expect(configuration.server.tlsListen?.description == "0.0.0.0:8443")
        #expect(
            configuration.server.certificates == [
                CertificateFiles(cert: "/etc/outpost/site.pem", key: "/etc/outpost/site.key"),
                CertificateFiles(
                    cert: "/etc/outpost/shop.pem", key: "/etc/outpost/shop.key",
                    hosts: ["shop.example", "*.shop.example"]),
            ])
        #expect(configuration.log.format == .json)
        #expect(OutpostConfiguration().log.format == .text && OutpostConfiguration().server.tlsListen == nil)
        let mistakes: [(String, String)] = [
            ("[[server.certificates]]\ncert = \"a.pem\"", "server.certificates[0] needs both cert and key (PEM files)"),
            (
                "[[server.certificates]]\ncert = \"a\"\nkey = \"b\"\nsni = \"x\"",
                "unknown configuration key: server.certificates[0].sni"
            ),
            ("[server]\ncertificates = \"a.pem\"", "server.certificates must be an array of tables"),
            ("[[server.certificates]]\ncert = \"a\"\nkey = \"b\"\nhosts = []", "server.certificates[0].hosts is empty"),
            ("[log]\nformat = \"xml\"", "log.format: \"xml\" is not one of text, json"),
        ]
        for (text, message) in mistakes {
            #expect(throws: ConfigurationError(message)) { try ConfigurationLoader.parse(text) }
        }
        var server = OutpostConfiguration.Server()
        server.tlsListen = SocketAddressSpec(host: "127.0.0.1", port: 8443)
        #expect(throws: ConfigurationError("server.tls_listen needs at least one [[server.certificates]] entry")) {
            try ConfigurationLoader.checkTLS(server)
        }
        server.tlsListen = nil
        server.certificates = [CertificateFiles(cert: "a", key: "b")]
        #expect(throws: ConfigurationError("[[server.certificates]] given without server.tls_listen")) {
            try ConfigurationLoader.checkTLS(server)
        }
    }

    @Test("[http2]: every limit read; frame and window sizes held to RFC 9113's bounds")
    func http2() throws {
        let configuration = try ConfigurationLoader.parse(
            """
            [http2]
            enabled = false
            max_concurrent_streams = 64
            max_header_list_size = "16k"
            header_table_size = 0
            max_frame_size = "64k"
            initial_window_size = "256k"
            connection_window_size = "4MiB"
            max_resets = 50
            reset_window = 10
            max_control_frames = 20
            control_window = 5
            max_continuation_frames = 3
            max_glitches = 100
            stall_timeout = 12.5
            """)
        var expected = OutpostConfiguration.HTTP2()
        expected.enabled = false
        expected.maxConcurrentStreams = 64
        expected.maxHeaderListSize = 16384
        expected.headerTableSize = 0
        expected.maxFrameSize = 65536
        expected.initialWindowSize = 262_144
        expected.connectionWindowSize = 4 << 20
        expected.maxResets = 50
        expected.resetWindow = 10
        expected.maxControlFrames = 20
        expected.controlWindow = 5
        expected.maxContinuationFrames = 3
        expected.maxGlitches = 100
        expected.stallTimeout = 12.5
        #expect(configuration.http2 == expected)
        let mistakes: [(String, String)] = [
            (
                "max_frame_size = 1000",
                "http2.max_frame_size must be a size of at least 16384 bytes (a number, or e.g. \"512MiB\")"
            ),
            ("max_frame_size = 16777216", "http2.max_frame_size must be at most 16777215 (RFC 9113 §6.5.2)"),
            (
                "initial_window_size = 2147483648",
                "http2.initial_window_size must be at most 2147483647 (RFC 9113 §6.9.2)"
            ),
            ("max_concurrent_streams = 0", "http2.max_concurrent_streams must be a whole number of at least 1"),
            ("streams = 5", "unknown configuration key: http2.streams"),
        ]
        for (line, message) in mistakes {
            #expect(throws: ConfigurationError(message)) { try ConfigurationLoader.parse("[http2]\n" + line) }
        }
    }

    @Test("every problem of a file is reported, not only the first")
    func everyProblem() throws {
        let text = """
            [server]
            listen = "nowhere"
            max_headers = "many"
            colour = "blue"
            [store]
            max_store_size = "1k"
            [log]
            level = "loud"
            """
        do {
            _ = try ConfigurationLoader.parse(text)
            Issue.record("parsed")
        } catch let error as ConfigurationError {
            #expect(
                error.problems == [
                    "server.listen: \"nowhere\" is not HOST:PORT",
                    "server.max_headers must be a whole number of at least 1",
                    "unknown configuration key: server.colour",
                    "store.max_store_size must be a size of at least 1048576 bytes (a number, or e.g. \"512MiB\")",
                    "log.level: \"loud\" is not one of trace, debug, info, notice, warning, error, critical",
                ])
        }
        // The keys that were right are kept (check-config goes on with them).
        let (partial, problems) = try ConfigurationLoader.parseCollecting(text + "\n[admin]\nmax_body_size = 4096")
        #expect(problems.count == 5 && partial.admin.maxBodySize == 4096)
    }

    @Test("the rendered configuration (check-config) parses back to the same, with the secrets masked")
    func renderRoundTrip() throws {
        let configuration = try ConfigurationLoader.parse(
            """
            [server]
            listen = "[::1]:8080"
            max_connections = 500
            tls_listen = "0.0.0.0:8443"
            via_pseudonym = "edge \\"one\\""
            [[server.certificates]]
            cert = "/etc/outpost/a.pem"
            key = "/etc/outpost/a.key"
            [[server.certificates]]
            cert = "/etc/outpost/b.pem"
            key = "/etc/outpost/b.key"
            hosts = ["b.example", "*.b.example"]
            [http2]
            max_concurrent_streams = 50
            stall_timeout = 2.5
            [upstream]
            default = "https://origin.internal:8443"
            parent = "http://shield:8080"
            tls_ca_file = "/etc/ssl/ca.pem"
            [upstream.hosts]
            "static.example.com" = "http://static:80"
            "video.example.com:8080" = { origin = "http://video:81", parent = "http://video-shield:8080" }
            [cache]
            heuristic_fraction = 0.25
            set_cookie = "strip"
            [store]
            path = "/var/lib/outpost/store"
            max_store_size = "2GiB"
            hot_body_bytes = 0
            on_corruption = "reset"
            [compression]
            types = ["text/*", "application/json"]
            [cluster]
            self = "http://10.0.0.1:8080"
            peers = ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]
            purge_journal = "postgres://outpost:secret@db:5432/journal"
            [admin]
            listen = "0.0.0.0:8090"
            token_file = "/etc/outpost/token"
            [log]
            format = "json"
            access = false
            """)
        var withToken = configuration
        withToken.admin.token = "very-secret-token"
        let rendered = ConfigurationRenderer.render(withToken, tokenSource: "from /etc/outpost/token")
        #expect(!rendered.contains("very-secret-token") && !rendered.contains("secret@"), "\(rendered)")
        #expect(rendered.contains("purge_journal = \"postgres://outpost:***@db:5432/journal\""))
        #expect(rendered.contains("# admin token: set (from /etc/outpost/token), not shown"))
        var expected = configuration
        expected.cluster.purgeJournal?.password = "***"
        #expect(try ConfigurationLoader.parse(rendered) == expected, "\(rendered)")
        // The defaults, too.
        #expect(
            try ConfigurationLoader.parse(ConfigurationRenderer.render(OutpostConfiguration()))
                == OutpostConfiguration())
    }

    @Test("consistent-hash peers: cluster.self, peers (self added when left out), health checks, local copies")
    func peers() throws {
        let configuration = try ConfigurationLoader.parse(
            """
            [cluster]
            self = "http://10.0.0.3:8080"
            peers = ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]
            health_interval = 5
            health_timeout = 0.5
            health_fall = 3
            health_rise = 4
            local_copy_ttl = 10
            """)
        let cluster = configuration.cluster
        #expect(cluster.selfURL?.description == "http://10.0.0.3:8080")
        #expect(
            cluster.members.map(\.description) == [
                "http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080",
            ])
        #expect(cluster.healthInterval == 5 && cluster.healthTimeout == 0.5)
        #expect(cluster.healthFall == 3 && cluster.healthRise == 4 && cluster.localCopyTTL == 10)
        let defaults = OutpostConfiguration().cluster
        #expect(defaults.members.isEmpty && defaults.healthInterval == 2 && defaults.healthTimeout == 2)
        #expect(defaults.healthFall == 3 && defaults.healthRise == 2 && defaults.localCopyTTL == 0)
    }

    @Test("the purge journal: a postgres URL (password masked when shown) and its settings")
    func journal() throws {
        let configuration = try ConfigurationLoader.parse(
            """
            [cluster]
            purge_journal = "postgres://outpost:s%40cret@db.internal:5433/purges?sslmode=require"
            journal_retention = 3600
            journal_timeout = 2
            journal_poll_interval = 10
            journal_reconnect_max = 5
            """)
        let cluster = configuration.cluster
        let location = try #require(cluster.purgeJournal)
        #expect(location.user == "outpost" && location.password == "s@cret" && location.host == "db.internal")
        #expect(location.port == 5433 && location.database == "purges" && location.requiresTLS)
        #expect(location.description == "postgres://outpost:***@db.internal:5433/purges?sslmode=require")
        #expect(cluster.journalRetention == 3600 && cluster.journalTimeout == 2)
        #expect(cluster.journalPollInterval == 10 && cluster.journalReconnectMax == 5)
        let plain = try JournalLocation(parsing: "postgresql://edge@10.0.0.9")
        #expect(plain.port == 5432 && plain.database == "edge" && plain.password == nil && !plain.requiresTLS)
        let defaults = OutpostConfiguration().cluster
        #expect(defaults.purgeJournal == nil && defaults.journalRetention == 604_800 && defaults.journalTimeout == 5)
        #expect(defaults.journalPollInterval == 30 && defaults.journalReconnectMax == 10)
    }

    @Test("values, sizes with units and per-Host origins are read")
    func values() throws {
        let configuration = try ConfigurationLoader.parse(
            """
            [server]
            listen = "0.0.0.0:80"
            max_header_bytes = "16k"
            [upstream]
            default = "http://origin.internal:8081"
            [upstream.hosts]
            "static.example.com" = "https://static-origin:8443"
            [store]
            max_store_size = "2GiB"
            sync_commits = false
            """)
        #expect(configuration.server.listen == SocketAddressSpec(host: "0.0.0.0", port: 80))
        #expect(configuration.server.maxHeaderBytes == 16 * 1024)
        #expect(configuration.upstream.defaultOrigin?.description == "http://origin.internal:8081")
        #expect(configuration.upstream.hosts["static.example.com"]?.description == "https://static-origin:8443")
        #expect(configuration.store.maxStoreSize == 2 << 30)
        #expect(configuration.store.syncCommits == false)
    }

    @Test("cache.set_cookie, and the older store_set_cookie_when_public it replaces")
    func setCookie() throws {
        #expect(OutpostConfiguration().cache.setCookie == .pass)
        for policy in SetCookiePolicy.allCases {
            let parsed = try ConfigurationLoader.parse("[cache]\nset_cookie = \"\(policy.rawValue)\"")
            #expect(parsed.cache.setCookie == policy)
        }
        #expect(try ConfigurationLoader.parse("[cache]\nstore_set_cookie_when_public = true").cache.setCookie == .strip)
        #expect(try ConfigurationLoader.parse("[cache]\nstore_set_cookie_when_public = false").cache.setCookie == .pass)
        let both = "[cache]\nstore_set_cookie_when_public = true\nset_cookie = \"store\""
        #expect(try ConfigurationLoader.parse(both).cache.setCookie == .store)
    }

    @Test(
        "mistakes are reported by key name",
        arguments: [
            ("[server]\nlisten = 8080", "server.listen"),
            ("[server]\nlisten = \"nowhere\"", "server.listen"),
            ("[server]\nlisen = \"127.0.0.1:1\"", "server.lisen"),
            ("[store]\nmax_store_size = \"lots\"", "store.max_store_size"),
            ("[upstream]\ndefault = \"ftp://x\"", "upstream.default"),
            ("[cache]\nhonour_request_directives = \"yes\"", "cache.honour_request_directives"),
            ("[bogus]\nx = 1", "bogus"),
            ("[log]\nlevel = \"loud\"", "log.level"),
            ("[cache]\nset_cookie = \"keep\"", "cache.set_cookie"),
            ("this is not toml", "invalid TOML"),
            ("[upstream]\nparent = \"shield:8080\"", "upstream.parent"),
            (
                "[upstream.hosts]\n\"a.example\" = { parent = \"http://s:1\" }",
                "upstream.hosts.a.example needs an origin"
            ),
            ("[upstream.hosts]\n\"a.example\" = { origin = \"http://o:1\", weight = 2 }", "weight"),
            ("[cluster]\nname = \"my fleet\"", "cluster.name"),
            ("[cluster]\npeers = [\"http://a:1\"]", "cluster.peers needs cluster.self"),
            ("[cluster]\nself = \"http://a:1\"\npeers = [\"http://a:1\", \"http://a:1\"]", "twice"),
            ("[cluster]\nself = \"http://a:1\"\npeers = [\"a:1\"]", "cluster.peers"),
            ("[cluster]\nself = \"http://a:1\"\npeers = \"http://a:1\"", "cluster.peers"),
            ("[cluster]\nhealth_fall = 0", "cluster.health_fall"),
            ("[cluster]\npurge_journal = \"mysql://u@h/db\"", "cluster.purge_journal"),
            ("[cluster]\npurge_journal = \"postgres://h/db\"", "needs a user"),
            ("[cluster]\npurge_journal = \"postgres://u@h/db?sslmode=allow\"", "sslmode"),
        ])
    func errors(text: String, mentions: String) {
        #expect {
            try ConfigurationLoader.parse(text)
        } throws: { error in
            (error as? ConfigurationError)?.message.contains(mentions) == true
        }
    }

    @Test("sizes: units are powers of 1024")
    func sizes() {
        #expect(ByteSize.parse("1024") == 1024)
        #expect(ByteSize.parse("64k") == 65_536)
        #expect(ByteSize.parse("512MiB") == 512 << 20)
        #expect(ByteSize.parse("1 GB") == 1 << 30)
        #expect(ByteSize.parse("1.5GB") == nil)
        #expect(ByteSize.parse("-1") == nil)
    }
}
