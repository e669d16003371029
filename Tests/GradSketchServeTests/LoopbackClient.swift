import Foundation
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 client over a blocking loopback socket, one request per connection,
/// independent of the server library under test. Its calls run on NIO's blocking-I/O pool,
/// never on Swift's cooperative threads, which the server's tasks need.
enum LoopbackClient {
    struct Reply: Sendable {
        let status: Int
        /// Header names lowercased.
        let headers: [String: String]
        let body: Data

        /// The body as JSON.
        func json() throws -> Any { try JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]) }

        /// The body as a JSON object.
        func object() throws -> [String: Any] {
            guard let object = try json() as? [String: Any] else { throw ClientError("expected a JSON object, found \(text)") }
            return object
        }

        var text: String { String(decoding: body, as: UTF8.self) }
    }

    struct ClientError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    static func get(_ port: Int, _ path: String) async throws -> Reply {
        try await send(port: port, method: "GET", path: path, body: nil)
    }

    static func post(_ port: Int, _ path: String, json: Any) async throws -> Reply {
        try await send(port: port, method: "POST", path: path, body: try JSONSerialization.data(withJSONObject: json))
    }

    static func post(_ port: Int, _ path: String, raw: String) async throws -> Reply {
        try await send(port: port, method: "POST", path: path, body: Data(raw.utf8))
    }

    /// Sends one request; with `chunked`, the body goes without a Content-Length.
    static func send(port: Int, method: String, path: String, body: Data?, chunked: Bool = false) async throws -> Reply {
        try await NIOThreadPool.singleton.runIfActive {
            try exchange(port: port, method: method, path: path, body: body, chunked: chunked)
        }
    }

    private static func exchange(port: Int, method: String, path: String, body: Data?, chunked: Bool) throws -> Reply {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketFD >= 0 else { throw ClientError("socket failed: errno \(errno)") }
        defer { close(socketFD) }
        var timeout = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(socketFD, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw ClientError("connect to port \(port) failed: errno \(errno)") }

        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        var payload = Data()
        if let body {
            head += "Content-Type: application/json\r\n"
            if chunked {
                head += "Transfer-Encoding: chunked\r\n"
                payload = Data(String(body.count, radix: 16).utf8) + Data("\r\n".utf8) + body + Data("\r\n0\r\n\r\n".utf8)
            } else {
                head += "Content-Length: \(body.count)\r\n"
                payload = body
            }
        }
        let request = Data((head + "\r\n").utf8) + payload
        // A server that refuses early may close before reading everything; its reply still counts.
        _ = request.withUnsafeBytes { bytes -> Bool in
            var sent = 0
            while sent < bytes.count {
                let written = Glibc.send(socketFD, bytes.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
                if written <= 0 { return false }
                sent += written
            }
            return true
        }
        var response = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(socketFD, &buffer, buffer.count, 0)
            if count <= 0 { break }
            response.append(contentsOf: buffer[0..<count])
        }
        return try parse(response)
    }

    private static func parse(_ response: Data) throws -> Reply {
        guard let split = response.firstRange(of: Data("\r\n\r\n".utf8)) else {
            throw ClientError("no complete HTTP head in \(response.count) bytes")
        }
        let lines = String(decoding: response[..<split.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw ClientError("bad status line \(lines[0])") }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Data(response[split.upperBound...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            body = try dechunk(body)
        } else if let length = headers["content-length"].flatMap(Int.init) {
            guard body.count == length else { throw ClientError("Content-Length \(length), received \(body.count) bytes") }
        }
        return Reply(status: status, headers: headers, body: body)
    }

    private static func dechunk(_ data: Data) throws -> Data {
        var output = Data()
        var rest = data[...]
        while let lineEnd = rest.firstRange(of: Data("\r\n".utf8)) {
            let sizeText = String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self)
            guard let size = Int(sizeText.split(separator: ";")[0], radix: 16) else { throw ClientError("bad chunk size \(sizeText)") }
            if size == 0 { return output }
            let start = lineEnd.upperBound
            output.append(rest[start..<(start + size)])
            rest = rest[(start + size + 2)...]
        }
        throw ClientError("chunked body without its last chunk")
    }
}
