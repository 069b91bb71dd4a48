/*
 * librdkafka's mock Kafka cluster (DESIGN.md, "Real peers for tests"): a real Kafka protocol peer for
 * kafkajs and kcat, built by test/helpers/kafka-mock.ts with `cc mock-cluster.c -lrdkafka`.
 *
 * Usage: mock-cluster BROKERS. Prints "bootstrap HOST:PORT,..." once listening, then reads commands,
 * one per line on stdin, and answers each with "ok" (or "error ..."):
 *   topic NAME PARTITIONS          create a topic (the admin API cannot, against this cluster)
 *   down BROKER_ID | up BROKER_ID  take a broker down (connections refused/closed) or back up
 *   rtt BROKER_ID MS               delay the broker's responses
 * It exits when stdin closes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

int main(int argc, char **argv) {
  int brokers = argc > 1 ? atoi(argv[1]) : 3;
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* The handle is only the cluster's bookkeeping: it never connects anywhere. */
  if (rd_kafka_conf_set(conf, "bootstrap.servers", "", err, sizeof err) != RD_KAFKA_CONF_OK) {
    fprintf(stderr, "conf: %s\n", err);
    return 1;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "rd_kafka_new: %s\n", err);
    return 1;
  }
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
  if (!mc) {
    fprintf(stderr, "rd_kafka_mock_cluster_new failed\n");
    return 1;
  }
  printf("bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(mc));
  fflush(stdout);

  char line[1024];
  while (fgets(line, sizeof line, stdin)) {
    char name[512];
    int a, b;
    rd_kafka_resp_err_t r = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (sscanf(line, "topic %511s %d", name, &a) == 2) {
      r = rd_kafka_mock_topic_create(mc, name, a, 1);
    } else if (sscanf(line, "down %d", &a) == 1) {
      r = rd_kafka_mock_broker_set_down(mc, a);
    } else if (sscanf(line, "up %d", &a) == 1) {
      r = rd_kafka_mock_broker_set_up(mc, a);
    } else if (sscanf(line, "rtt %d %d", &a, &b) == 2) {
      r = rd_kafka_mock_broker_set_rtt(mc, a, b);
    } else {
      printf("error unknown command: %s", line);
      fflush(stdout);
      continue;
    }
    if (r) printf("error %s\n", rd_kafka_err2str(r));
    else printf("ok\n");
    fflush(stdout);
  }
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}
