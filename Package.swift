// swift-tools-version:6.1
import PackageDescription

/// Settings every Swift target shares: Swift 6 mode, and imports that stay internal unless
/// a module re-exports them on purpose, so no C type (`hid_t`) leaks into a public API.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")
let crypto: Target.Dependency = .product(name: "Crypto", package: "swift-crypto")
let hummingbird: Target.Dependency = .product(name: "Hummingbird", package: "hummingbird")
/// What the server names beside Hummingbird; all of it already in Hummingbird's graph.
let serverSupport: [Target.Dependency] = [
    .product(name: "HTTPTypes", package: "swift-http-types"),
    .product(name: "Logging", package: "swift-log"),
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
    .product(name: "UnixSignals", package: "swift-service-lifecycle"),
]

let package = Package(
    name: "GradSketch",
    products: [
        /// The engine's one public face: Store, Snapshot, transactions, queries.
        .library(name: "GradSketch", targets: ["GradSketch"]),
        .executable(name: "gradsketch", targets: ["gradsketch"]),
        .executable(name: "gradsketch-reproduce", targets: ["gradsketch-reproduce"]),
        /// The HTTP server behind `gradsketch serve` (Spec/serve.md), apart from the CLI so
        /// the CLI's start-up never loads the server library.
        .executable(name: "gradsketch-serve", targets: ["gradsketch-serve"]),
        /// The distributed commands under mpirun/srun (the CLI execs it when launched by MPI),
        /// apart from the CLI so that only this binary links MPI.
        .executable(name: "gradsketch-mpi", targets: ["gradsketch-mpi"]),
        /// The C ABI (Spec/c-api.md) as a shared library, `libgradsketch-c.so`. Not named
        /// `gradsketch`: SwiftPM then silently skips linking the CLI of the same name.
        .library(name: "gradsketch-c", type: .dynamic, targets: ["GradSketchC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        // No traits: the server needs neither swift-configuration nor full Foundation, and
        // leaving them out keeps them out of every build.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.14.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // MARK: - C libraries

        .systemLibrary(
            name: "CHDF5",
            pkgConfig: "hdf5",
            providers: [.apt(["libhdf5-dev"]), .brew(["hdf5"])]
        ),
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"]), .brew(["openblas"])]
        ),
        /// OpenMPI from Debian (`ompi-c.pc`); only GradSketchMPI and gradsketch-mpi link it.
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"]), .brew(["open-mpi"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]
        ),
        /// Byte-level kernels that need CPU instructions Swift cannot name (SSE4.2 CRC32, F16C).
        .target(name: "CGradSketchKernels"),
        /// The C ABI's header, `gradsketch.h` (Spec/c-api.md); GradSketchC implements it.
        .target(name: "CGradSketchABI"),

        // MARK: - Modules

        /// The facade: what programs that embed GradSketch (and the C ABI) call.
        .target(
            name: "GradSketch",
            dependencies: ["GradSketchStore", "GradSketchSearch", "GradSketchSelect", "GradSketchProjection", "GradSketchInterchange"],
            swiftSettings: swiftSettings
        ),

        /// The C ABI over the facade: `@_cdecl` functions, opaque handles, status codes.
        .target(
            name: "GradSketchC",
            dependencies: ["GradSketch", "GradSketchInterchange", "GradSketchStore", "CGradSketchABI"],
            swiftSettings: swiftSettings
        ),

        /// Sharded stores and distributed query, selection and index builds over a
        /// transport-neutral `Collective`; links no MPI.
        .target(
            name: "GradSketchDistributed",
            dependencies: ["GradSketch", "GradSketchStore", "GradSketchSearch", "GradSketchSelect", "GradSketchInterchange", "COpenBLAS"],
            swiftSettings: swiftSettings
        ),
        /// `Collective` over MPI.
        .target(
            name: "GradSketchMPI",
            dependencies: ["GradSketchDistributed", "GradSketchStore", "CMPI"],
            swiftSettings: swiftSettings
        ),

        .target(name: "GradSketchHDF5", dependencies: ["CHDF5"], swiftSettings: swiftSettings),
        .target(
            name: "GradSketchInterchange",
            dependencies: ["CGradSketchKernels"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GradSketchProjection",
            dependencies: ["COpenBLAS", crypto],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GradSketchSearch",
            dependencies: ["GradSketchStore", "GradSketchInterchange", "CGradSketchKernels", "COpenBLAS"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GradSketchSelect",
            dependencies: ["GradSketchStore", "GradSketchSearch", "GradSketchInterchange", "CGradSketchKernels", "COpenBLAS"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GradSketchExperiments",
            dependencies: ["GradSketchModels", "GradSketchProjection", "GradSketchSelect", "GradSketchSearch", "GradSketchStore", "GradSketchInterchange"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GradSketchModels",
            dependencies: ["GradSketchProjection", "COpenBLAS", "CZlib"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GradSketchStore",
            dependencies: ["GradSketchHDF5", "GradSketchInterchange", "CGradSketchKernels", crypto],
            swiftSettings: swiftSettings
        ),

        /// The HTTP endpoint over a snapshot (Spec/serve.md): routes, JSON request and
        /// response types, the snapshot a server answers from.
        .target(
            name: "GradSketchServe",
            dependencies: ["GradSketch", "GradSketchStore", hummingbird] + serverSupport,
            swiftSettings: swiftSettings
        ),

        // MARK: - Tools

        .executableTarget(
            name: "gradsketch",
            dependencies: ["GradSketch", "GradSketchStore", "GradSketchInterchange", "GradSketchProjection", "GradSketchModels", "GradSketchSearch", "GradSketchSelect", argumentParser],
            path: "Tools/gradsketch",
            swiftSettings: swiftSettings
        ),

        /// The Fashion-MNIST experiments and their report, apart from the production tool.
        .executableTarget(
            name: "gradsketch-reproduce",
            dependencies: ["GradSketchExperiments", "GradSketchModels", "GradSketchStore", argumentParser],
            path: "Tools/gradsketch-reproduce",
            swiftSettings: swiftSettings
        ),

        /// `gradsketch serve`: the CLI execs this sibling binary.
        .executableTarget(
            name: "gradsketch-serve",
            dependencies: ["GradSketchServe", "GradSketch", "GradSketchSearch", argumentParser],
            path: "Tools/gradsketch-serve",
            swiftSettings: swiftSettings
        ),

        /// `mpirun -np N gradsketch-mpi …` (the CLI execs it under an MPI launcher).
        .executableTarget(
            name: "gradsketch-mpi",
            dependencies: ["GradSketchMPI", "GradSketchDistributed", "GradSketch", "GradSketchStore", "GradSketchInterchange", argumentParser],
            path: "Tools/gradsketch-mpi",
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "gradsketch-bench",
            dependencies: ["GradSketchStore", "GradSketchInterchange", "GradSketchProjection", "GradSketchModels", "GradSketchSearch", "GradSketchSelect", "COpenBLAS", "CGradSketchKernels"],
            path: "Tools/gradsketch-bench",
            swiftSettings: swiftSettings
        ),

        // MARK: - Tests

        /// The parsers the fuzzer drives (Tests/Fuzz/run.sh), shared with the regression test.
        .target(
            name: "GradSketchFuzzTargets",
            dependencies: ["GradSketchInterchange", "GradSketchStore"],
            path: "Tests/Fuzz/Targets",
            swiftSettings: swiftSettings
        ),
        /// A libFuzzer target when built by Tests/Fuzz/run.sh, a corpus replayer otherwise.
        .executableTarget(
            name: "gradsketch-fuzz",
            dependencies: ["GradSketchFuzzTargets"],
            path: "Tests/Fuzz/Harness",
            swiftSettings: swiftSettings
        ),

        .target(
            name: "GradSketchTestSupport",
            dependencies: ["GradSketchInterchange"],
            path: "Tests/GradSketchTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GradSketchTests",
            // The lower modules only as oracles that read back what the facade committed and searched.
            dependencies: ["GradSketch", "GradSketchStore", "GradSketchSearch", "GradSketchInterchange", "GradSketchProjection", "GradSketchTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GradSketchDistributedTests",
            dependencies: ["GradSketchDistributed", "GradSketch", "GradSketchStore", "GradSketchSearch", "GradSketchSelect", "GradSketchInterchange", "GradSketchTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GradSketchHDF5Tests",
            dependencies: ["GradSketchHDF5", "GradSketchTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GradSketchInterchangeTests",
            dependencies: ["GradSketchInterchange", "CGradSketchKernels", "GradSketchTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GradSketchStoreTests",
            dependencies: ["GradSketchStore", "GradSketchTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GradSketchProjectionTests",
            dependencies: ["GradSketchProjection", "GradSketchInterchange", "GradSketchTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GradSketchSearchTests",
            dependencies: ["GradSketchSearch", "GradSketchStore", "GradSketchInterchange", "GradSketchTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GradSketchSelectTests",
            dependencies: ["GradSketchSelect", "GradSketchSearch", "GradSketchStore", "GradSketchInterchange", "GradSketchTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GradSketchModelsTests",
            dependencies: ["GradSketchModels", "GradSketchProjection", "GradSketchTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GradSketchExperimentsTests",
            dependencies: ["GradSketchExperiments", "GradSketchTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GradSketchFuzzTests",
            dependencies: ["GradSketchFuzzTargets", "GradSketchInterchange", "GradSketchTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GradSketchServeTests",
            dependencies: ["GradSketchServe", "GradSketch", "GradSketchStore", "GradSketchInterchange", "GradSketchTestSupport", hummingbird] + serverSupport,
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GradSketchToolTests",
            dependencies: ["gradsketch", "GradSketchStore", "GradSketchInterchange", "GradSketchTestSupport"],
            swiftSettings: swiftSettings
        ),
    ]
)
