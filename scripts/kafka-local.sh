#!/usr/bin/env bash
# kafka-local.sh — a real single-node Apache Kafka (KRaft, combined broker+controller)
# on 127.0.0.1, for the tests and the demo.
#
#   scripts/kafka-local.sh fetch                   resolve the Kafka jars into the cache
#   scripts/kafka-local.sh start                   start (returns when the broker answers)
#   scripts/kafka-local.sh status                  exit 0 if it answers, 1 if not
#   scripts/kafka-local.sh topics [--partitions N] [TOPIC...]
#                                                  create TOPICs (default: krill.requests,
#                                                  krill.results, krill.dlq, krill.stats)
#   scripts/kafka-local.sh delete TOPIC...         delete TOPICs (returns once the broker did)
#   scripts/kafka-local.sh alter --partitions N TOPIC...
#                                                  grow TOPICs to N partitions
#   scripts/kafka-local.sh stop [--keep-data]      stop it and remove its data (--keep-data:
#                                                  keep it; the next `start` reuses it)
#
# `start` and `status` print the bootstrap address (127.0.0.1:PORT) as their last line.
# Environment:
#   KRILL_KAFKA_PORT       broker port (default 9092); the controller takes a free port
#   KRILL_KAFKA_VERSION    Kafka version from Maven Central (default below)
#   KRILL_KAFKA_CACHE      jar cache (default .cache/kafka in the repo)
#   KRILL_KAFKA_HEAP       JVM heap (default 512m)
#   KRILL_KAFKA_STATE      state dir: pid file, data, logs (default $TMPDIR/krill-kafka-UID-PORT)
#   KRILL_KAFKA_START_TIMEOUT  seconds `start` waits for the broker (default 60)
#   KRILL_KAFKA_SASL       USER:PASS — `start` also opens a SASL_PLAINTEXT listener
#                          (mechanism PLAIN, that one user) on a second port and prints
#                          "sasl=127.0.0.1:PORT" before the bootstrap address; `status`
#                          prints it too. The password is written only to the broker's
#                          server.properties (mode 600, in the state dir), never printed.
#   KRILL_KAFKA_SASL_PORT  its port (default: a free one)
# Rules: listens on 127.0.0.1 only; one broker per port; a second `start` while it runs
# just reports it; a stale pid file (dead process) is cleaned up; `stop` waits for the
# JVM to exit (SIGTERM, then SIGKILL after 20 s) and removes the state dir.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=${KRILL_KAFKA_VERSION:-4.4.0}
port=${KRILL_KAFKA_PORT:-9092}
cache=${KRILL_KAFKA_CACHE:-$root/.cache/kafka}
heap=${KRILL_KAFKA_HEAP:-512m}
state=${KRILL_KAFKA_STATE:-${TMPDIR:-/tmp}/krill-kafka-$(id -u)-$port}
start_timeout=${KRILL_KAFKA_START_TIMEOUT:-60}
libs=$cache/$version/libs
addr=127.0.0.1:$port
sasl=${KRILL_KAFKA_SASL:-}

die() { echo "kafka-local: $*" >&2; exit 1; }
note() { echo "kafka-local: $*" >&2; }

usage() { awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; }

# ---- jars ----------------------------------------------------------------------
fetch() {
  [ -f "$libs/.complete" ] && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven (scripts/setup.sh does)"
  command -v java >/dev/null 2>&1 || die "java not found: install a JDK >= 17 (scripts/setup.sh does)"
  mkdir -p "$cache/$version"
  (
    flock -w 600 9 || die "timed out waiting for another fetch of Kafka $version"
    [ -f "$libs/.complete" ] && exit 0
    note "fetching Apache Kafka $version jars from Maven Central into $libs"
    work=$cache/$version/work
    rm -rf "$work" "$libs.partial" && mkdir -p "$work"
    # kafka_2.13 is the broker (kafka.Kafka, StorageTool); kafka-clients brings the
    # AdminClient used by `topics`; log4j-slf4j-impl routes the broker's logs to a file.
    cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>krill</groupId><artifactId>kafka-local</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-clients</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
EOF
    (cd "$work" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$libs.partial" >"$work/mvn.log" 2>&1) \
      || { tail -n 20 "$work/mvn.log" >&2; die "mvn could not resolve Kafka $version (is Maven Central reachable?)"; }
    ls "$libs.partial"/kafka_2.13-"$version".jar >/dev/null 2>&1 || die "mvn did not bring kafka_2.13-$version.jar"
    touch "$libs.partial/.complete"
    rm -rf "$libs" && mv "$libs.partial" "$libs"
    rm -rf "$work"
  ) 9>"$cache/$version/.lock"
}

classpath() { echo "$libs/*"; }

# ---- state ---------------------------------------------------------------------
pid_alive() {  # the pid file's process is alive and is our broker
  [ -f "$state/pid" ] || return 1
  local pid; pid=$(cat "$state/pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "krill.kafka.state=$state" || return 1
}

answers() {  # the broker answers a metadata request
  if command -v kcat >/dev/null 2>&1; then
    timeout 10 kcat -L -b "$addr" -m 5 >/dev/null 2>&1
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && grep -q "Kafka Server started" "$state/server.log" 2>/dev/null
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# SASL/PLAIN (KRILL_KAFKA_SASL=USER:PASS): the extra listener's server.properties lines,
# with the JAAS config inline (listener.name.<listener>.<mechanism>.sasl.jaas.config).
sasl_properties() {
  local user=${sasl%%:*} pass=${sasl#*:}
  [[ $sasl == *:* && -n $user && -n $pass ]] || die "KRILL_KAFKA_SASL must be USER:PASS"
  [[ $user$pass != *[\\\"]* ]] || die "KRILL_KAFKA_SASL: no quotes or backslashes in the user or password"
  cat <<EOP
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$user="$pass";
EOP
}

sasl_addr() {  # the SASL listener's address when this broker has one (empty otherwise)
  local p; p=$(sed -n 's/^listeners=.*SASL_PLAINTEXT:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$state/server.properties" 2>/dev/null)
  [ -z "$p" ] || echo "127.0.0.1:$p"
}

cmd_start() {
  if pid_alive; then
    answers || note "broker process $(cat "$state/pid") is running but not answering yet"
    note "already running (pid $(cat "$state/pid"), state $state)"
    local sa; sa=$(sasl_addr); [ -z "$sa" ] || echo "sasl=$sa"
    echo "$addr"; return 0
  fi
  local reuse=0
  if [ -f "$state/kept" ] && [ -f "$state/server.properties" ]; then
    reuse=1
  elif [ -e "$state" ]; then
    note "removing stale state $state"
    rm -rf "$state"
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use by another process; set KRILL_KAFKA_PORT"
  fi
  fetch
  mkdir -p "$state/data"
  local cport
  if [ $reuse = 1 ]; then
    cport=$(sed -n 's/^controller.quorum.voters=1@127.0.0.1://p' "$state/server.properties")
    (exec 3<>"/dev/tcp/127.0.0.1/$cport") 2>/dev/null && die "controller port $cport of the kept state is in use"
  else
    cport=$(free_port)
    [ "$cport" != "$port" ] || cport=$(free_port)
  fi
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport" advertised="PLAINTEXT://127.0.0.1:$port"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" sport=""
  if [ -n "$sasl" ] && [ $reuse = 0 ]; then
    sport=${KRILL_KAFKA_SASL_PORT:-$(free_port)}
    (exec 3<>"/dev/tcp/127.0.0.1/$sport") 2>/dev/null && die "SASL port $sport is already in use; set KRILL_KAFKA_SASL_PORT"
    listeners+=",SASL_PLAINTEXT://127.0.0.1:$sport"; advertised+=",SASL_PLAINTEXT://127.0.0.1:$sport"
    protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  [ $reuse = 1 ] || (umask 077; cat >"$state/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$state/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
num.network.threads=2
num.io.threads=4
EOF
  )
  if [ -n "$sport" ]; then sasl_properties >>"$state/server.properties" || die "cannot write the SASL settings"; fi
  cat >"$state/log4j2.properties" <<EOF
status = error
appender.f.type = File
appender.f.name = F
appender.f.fileName = $state/server.log
appender.f.layout.type = PatternLayout
appender.f.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.f.ref = F
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
EOF
  local jvm=(java -Xmx"$heap" -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
             -Djava.awt.headless=true -Dlog4j2.configurationFile="$state/log4j2.properties"
             -Dkrill.kafka.state="$state" -cp "$(classpath)")
  if [ $reuse = 0 ]; then
  local cluster_id
  cluster_id=$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>>"$state/format.log" | tail -n 1)
  [ -n "$cluster_id" ] || { cat "$state/format.log" >&2; die "StorageTool random-uuid failed"; }
  "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$state/server.properties" \
      >>"$state/format.log" 2>&1 || { cat "$state/format.log" >&2; die "StorageTool format failed"; }
  else
    note "restarting on the kept data in $state"
  fi
  rm -f "$state/kept"
  nohup "${jvm[@]}" kafka.Kafka "$state/server.properties" >"$state/stdout.log" 2>&1 </dev/null &
  echo $! >"$state/pid"
  local t0=$SECONDS
  until answers; do
    if ! pid_alive; then
      tail -n 30 "$state/stdout.log" "$state/server.log" >&2 2>/dev/null || true
      die "the broker exited during start-up (logs above)"
    fi
    if [ $((SECONDS - t0)) -ge "$start_timeout" ]; then
      tail -n 30 "$state/server.log" >&2 2>/dev/null || true
      cmd_stop >/dev/null 2>&1 || true
      die "the broker did not answer within ${start_timeout}s"
    fi
    sleep 0.5
  done
  note "started Kafka $version (pid $(cat "$state/pid"), ${SECONDS}s, state $state)"
  local sa; sa=$(sasl_addr); [ -z "$sa" ] || echo "sasl=$sa"
  echo "$addr"
}

cmd_status() {
  if pid_alive && answers; then
    note "running (pid $(cat "$state/pid"), Kafka $version)"
    local sa; sa=$(sasl_addr); [ -z "$sa" ] || echo "sasl=$sa"
    echo "$addr"; return 0
  fi
  if pid_alive; then note "process $(cat "$state/pid") is running but the broker does not answer"
  else note "not running"; fi
  echo "$addr"; return 1
}

cmd_stop() {
  local keep=0
  case "${1:-}" in --keep-data) keep=1 ;; "") ;; *) die "stop: unknown option '$1'" ;; esac
  if pid_alive; then
    local pid; pid=$(cat "$state/pid")
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      note "broker did not exit in 20 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    note "stopped (pid $pid)"
  else
    note "not running"
  fi
  if [ $keep = 1 ] && [ -d "$state/data" ]; then
    touch "$state/kept"; rm -f "$state/pid"
  else
    rm -rf "$state"
  fi
}

# topic_args WHAT DEFAULT_PARTITIONS ARGS...: [--partitions N] TOPIC... into
# $opt_partitions and the array opt_topics.
topic_args() {
  local what=$1; opt_partitions=$2; opt_topics=(); shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --partitions) [ $# -ge 2 ] || die "--partitions needs a number"; opt_partitions=$2; shift 2 ;;
      --partitions=*) opt_partitions=${1#*=}; shift ;;
      -*) die "$what: unknown option '$1'" ;;
      *) opt_topics+=("$1"); shift ;;
    esac
  done
  [[ $opt_partitions =~ ^[0-9]+$ ]] && [ "$opt_partitions" -ge 1 ] || die "$what: --partitions must be a positive integer"
}

# admin_java NAME ARGS...: runs the Java source on stdin (public class NAME) with the
# Kafka jars, the broker address first, then ARGS; its output prefixed on stderr.
admin_java() {
  local name=$1; shift
  pid_alive || die "no broker running on port $port (run: scripts/kafka-local.sh start)"
  fetch
  cat >"$state/$name.java"
  java -Xmx128m -Dlog4j2.configurationFile="$state/log4j2.properties" -cp "$(classpath)" \
      "$state/$name.java" "$addr" "$@" 2>&1 | sed 's/^/kafka-local: /' >&2
  return "${PIPESTATUS[0]}"
}

cmd_topics() {
  topic_args topics 4 "$@"
  local partitions=$opt_partitions topics=("${opt_topics[@]}")
  [ ${#topics[@]} -gt 0 ] || topics=(krill.requests krill.results krill.dlq krill.stats)
  # One JVM creates all topics through the AdminClient (Java's single-file launcher);
  # existing topics are left as they are.
  admin_java CreateTopics "$partitions" "${topics[@]}" <<'EOF' || die "topic creation failed"
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.errors.TopicExistsException;
public class CreateTopics {
    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, a[0]);
        int parts = Integer.parseInt(a[1]);
        List<NewTopic> ts = new ArrayList<>();
        for (int i = 2; i < a.length; i++) ts.add(new NewTopic(a[i], parts, (short) 1));
        int rc = 0;
        try (Admin admin = Admin.create(p)) {
            Map<String, org.apache.kafka.common.KafkaFuture<Void>> fs = admin.createTopics(ts).values();
            for (Map.Entry<String, org.apache.kafka.common.KafkaFuture<Void>> e : fs.entrySet()) {
                try { e.getValue().get(); System.out.println("created " + e.getKey() + " partitions=" + parts); }
                catch (java.util.concurrent.ExecutionException x) {
                    if (x.getCause() instanceof TopicExistsException) System.out.println("exists " + e.getKey());
                    else { System.err.println("failed " + e.getKey() + ": " + x.getCause()); rc = 1; }
                }
            }
        }
        System.exit(rc);
    }
}
EOF
}

# delete and alter: one JVM each through the AdminClient (Java's single-file launcher).
cmd_admin() {
  local op=$1; shift
  topic_args "$op" 1 "$@"
  [ ${#opt_topics[@]} -gt 0 ] || die "$op: name the topics"
  if [ "$op" = alter ]; then
    printf '%s\n' "$@" | grep -q -- '^--partitions' || die "alter: --partitions N (the new total) is required"
  fi
  admin_java AdminOps "$op" "$opt_partitions" "${opt_topics[@]}" <<'EOF' || die "$op failed"
import java.util.*;
import org.apache.kafka.clients.admin.*;
public class AdminOps {
    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, a[0]);
        List<String> ts = Arrays.asList(a).subList(3, a.length);
        try (Admin admin = Admin.create(p)) {
            if (a[1].equals("delete")) {
                admin.deleteTopics(ts).all().get();
                for (String t : ts) System.out.println("deleted " + t);
            } else {
                Map<String, NewPartitions> m = new HashMap<>();
                for (String t : ts) m.put(t, NewPartitions.increaseTo(Integer.parseInt(a[2])));
                admin.createPartitions(m).all().get();
                for (String t : ts) System.out.println("altered " + t + " partitions=" + a[2]);
            }
        } catch (java.util.concurrent.ExecutionException x) {
            System.err.println(a[1] + " failed: " + x.getCause());
            System.exit(1);
        }
    }
}
EOF
}

[ $# -ge 1 ] || { usage >&2; exit 2; }
cmd=$1; shift
case "$cmd" in
  start) cmd_start ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status ;;
  topics) cmd_topics "$@" ;;
  delete|alter) cmd_admin "$cmd" "$@" ;;
  fetch) fetch; note "Kafka $version jars in $libs" ;;
  -h|--help|help) usage ;;
  --version) echo "kafka-local.sh (krill) $(cat "$root/VERSION"), Kafka $version" ;;
  *) echo "kafka-local: unknown command '$cmd' (try --help)" >&2; exit 2 ;;
esac
