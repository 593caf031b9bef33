// The example server from the S42Core SSE documentation, unmodified except
// for the import line, which now names native-sse.
import { createServer } from 'http';
import { SSE } from 'native-sse';
const server = createServer((req, res) => {
if (req.url === '/events') {
const sse = new SSE(req, res);
// Send an example event after the connection is established
setTimeout(() => {
sse.send({
eventName: 'exampleEvent',
eventPayload: { data: 'Hello, SSE!' },
});
}, 1000);
// Close the connection after 5 seconds
setTimeout(() => {
sse.close();
}, 5000);
} else {
res.writeHead(404);
res.end();
}
});
server.listen(3000, () => {
console.log('Server running at http://localhost:3000/');
});
