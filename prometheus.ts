// Runs in both processes: the `graceful-reboot/prometheus` entry point: the package's stats as
// Prometheus metrics with prom-client (an optional peer dependency, loaded only from here).
export { gracefulMetrics, type GracefulMetricsOptions } from './lib/adapters/prometheus'
