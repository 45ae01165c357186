module.exports = {
  files: ['dist/test/**/*.test.js'],
  timeout: '60s',
  workerThreads: false,
  concurrency: 2
}
