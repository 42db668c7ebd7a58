// The Nexmark queries weir runs (weir_job::nexmark), in Apache Flink 2.x SQL,
// on the events `weir bench nexmark-events` wrote: the side-by-side half of
// `bash bench/flink-nexmark/run.sh`. The SQL is flink-nexmark's, with the
// field names of the JSON events (and the lower-case US states the
// generator uses).
//
// java -cp 'pyflink/lib/*:.' NexmarkSql EVENTS.jsonl QUERY PARALLELISM CHECKPOINT_MS
//
// Prints one JSON line: results (rows of the changelog), seconds and CPU
// seconds of the job's execution (planning and JVM start not counted, as
// weir does not count compiling), and the process's peak RSS.

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;

import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.accumulators.LongCounter;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.table.api.Table;
import org.apache.flink.table.api.bridge.java.StreamTableEnvironment;
import org.apache.flink.types.Row;

public class NexmarkSql {
    static final String BID_WINDOWS =
        "SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime "
            + "FROM TABLE(HOP(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) "
            + "GROUP BY auction, window_start, window_end";

    static String query(String q) {
        switch (q) {
            case "q0":
                return "SELECT auction, bidder, price, `dateTime`, extra FROM bid";
            case "q1":
                return "SELECT auction, bidder, 0.908 * price AS price, `dateTime`, extra FROM bid";
            case "q2":
                return "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0";
            case "q3":
                return "SELECT P.name, P.city, P.state, A.id FROM auction AS A INNER JOIN person AS P "
                    + "ON A.seller = P.id WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')";
            case "q4":
                return "SELECT Q.category, AVG(Q.final) FROM ("
                    + "SELECT MAX(B.price) AS final, A.category FROM auction A, bid B "
                    + "WHERE A.id = B.auction AND B.`dateTime` BETWEEN A.`dateTime` AND A.expires "
                    + "GROUP BY A.id, A.category) Q GROUP BY Q.category";
            case "q5":
                return "SELECT AuctionBids.auction, AuctionBids.num FROM (" + BID_WINDOWS + ") AS AuctionBids "
                    + "JOIN (SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime FROM ("
                    + BID_WINDOWS + ") AS CountBids GROUP BY CountBids.starttime, CountBids.endtime) AS MaxBids "
                    + "ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime "
                    + "AND AuctionBids.num >= MaxBids.maxn";
            case "q7":
                return "SELECT B.auction, B.price, B.bidder, B.`dateTime`, B.extra FROM bid B JOIN ("
                    + "SELECT MAX(price) AS maxprice, window_end AS `dateTime` "
                    + "FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND)) "
                    + "GROUP BY window_start, window_end) B1 ON B.price = B1.maxprice "
                    + "WHERE B.`dateTime` BETWEEN B1.`dateTime` - INTERVAL '10' SECOND AND B1.`dateTime`";
            case "q8":
                return "SELECT P.id, P.name, P.starttime FROM ("
                    + "SELECT id, name, window_start AS starttime, window_end AS endtime "
                    + "FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND)) "
                    + "GROUP BY id, name, window_start, window_end) P JOIN ("
                    + "SELECT seller, window_start AS starttime, window_end AS endtime "
                    + "FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND)) "
                    + "GROUP BY seller, window_start, window_end) A "
                    + "ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime";
            case "q11":
                return "SELECT bidder, count(*) AS bid_count, window_start AS starttime, window_end AS endtime "
                    + "FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND)) "
                    + "GROUP BY bidder, window_start, window_end";
            default:
                throw new IllegalArgumentException("unknown query " + q);
        }
    }

    /** Counts the rows that reach the sink. */
    public static class Count extends RichMapFunction<Row, Row> {
        private final LongCounter rows = new LongCounter();

        @Override
        public void open(OpenContext ctx) {
            getRuntimeContext().addAccumulator("rows", rows);
        }

        @Override
        public Row map(Row r) {
            rows.add(1);
            return r;
        }
    }

    static long cpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
            .getProcessCpuTime();
    }

    static double peakRssMib() throws Exception {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("VmHWM:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", "")) / 1024.0;
            }
        }
        return -1;
    }

    public static void main(String[] args) throws Exception {
        String events = Path.of(args[0]).toAbsolutePath().toString();
        String q = args[1];
        int parallelism = Integer.parseInt(args[2]);
        long checkpointMs = Long.parseLong(args[3]);

        Configuration conf = new Configuration();
        if (checkpointMs > 0) {
            Path dir = Files.createTempDirectory("flink-nexmark-checkpoints");
            conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
            conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, dir.toUri().toString());
        }
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(parallelism);
        if (checkpointMs > 0) {
            env.enableCheckpointing(checkpointMs);
        }
        StreamTableEnvironment t = StreamTableEnvironment.create(env);
        t.executeSql("CREATE TABLE datagen ("
            + " event_type INT,"
            + " person ROW<id BIGINT, name STRING, email_address STRING, credit_card STRING, city STRING,"
            + "   state STRING, date_time BIGINT, extra STRING>,"
            + " auction ROW<id BIGINT, item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT,"
            + "   date_time BIGINT, expires BIGINT, seller BIGINT, category BIGINT, extra STRING>,"
            + " bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,"
            + "   date_time BIGINT, extra STRING>,"
            + " `dateTime` AS TO_TIMESTAMP_LTZ(CASE WHEN event_type = 0 THEN person.date_time"
            + "   WHEN event_type = 1 THEN auction.date_time ELSE bid.date_time END, 3),"
            + " WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND"
            + ") WITH ('connector' = 'filesystem', 'path' = 'file://" + events + "', 'format' = 'json')");
        t.executeSql("CREATE VIEW person AS SELECT person.id, person.name, person.email_address AS emailAddress,"
            + " person.credit_card AS creditCard, person.city, person.state, `dateTime`, person.extra"
            + " FROM datagen WHERE event_type = 0");
        t.executeSql("CREATE VIEW auction AS SELECT auction.id, auction.item_name AS itemName,"
            + " auction.description, auction.initial_bid AS initialBid, auction.reserve, `dateTime`,"
            + " TO_TIMESTAMP_LTZ(auction.expires, 3) AS expires, auction.seller, auction.category, auction.extra"
            + " FROM datagen WHERE event_type = 1");
        t.executeSql("CREATE VIEW bid AS SELECT bid.auction, bid.bidder, bid.price, bid.channel, bid.url,"
            + " `dateTime`, bid.extra FROM datagen WHERE event_type = 2");
        Table result = t.sqlQuery(query(q));
        t.toChangelogStream(result).map(new Count()).sinkTo(new DiscardingSink<>());

        long cpu0 = cpuNanos();
        long t0 = System.nanoTime();
        JobExecutionResult r = env.execute("nexmark-" + q);
        double seconds = (System.nanoTime() - t0) / 1e9;
        double cpu = (cpuNanos() - cpu0) / 1e9;
        Long rows = r.getAccumulatorResult("rows");
        System.out.printf(
            "{\"query\":\"%s\",\"results\":%d,\"parallelism\":%d,\"seconds\":%.3f,\"cpu_seconds\":%.3f,\"peak_rss_mib\":%.1f}%n",
            q, rows == null ? 0 : rows, parallelism, seconds, cpu, peakRssMib());
    }
}
