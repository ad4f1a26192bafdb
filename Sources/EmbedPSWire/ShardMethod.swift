/// Full method paths of the shard service (see Protos/embedps.proto).
public enum ShardMethod {
    public static let pull = "/embedps.v1.Shard/Pull"
    public static let push = "/embedps.v1.Shard/Push"
    public static let createTable = "/embedps.v1.Shard/CreateTable"
    public static let describeTable = "/embedps.v1.Shard/DescribeTable"
    public static let listTables = "/embedps.v1.Shard/ListTables"
    public static let dropTable = "/embedps.v1.Shard/DropTable"
    public static let shardStatus = "/embedps.v1.Shard/ShardStatus"
    public static let flush = "/embedps.v1.Shard/Flush"
    public static let registerItems = "/embedps.v1.Shard/RegisterItems"
    public static let pullPooled = "/embedps.v1.Shard/PullPooled"
    public static let pushPooled = "/embedps.v1.Shard/PushPooled"
    public static let sparsityReport = "/embedps.v1.Shard/SparsityReport"
    public static let sparsityStep = "/embedps.v1.Shard/SparsityStep"
    public static let healthCheck = "/grpc.health.v1.Health/Check"
}
