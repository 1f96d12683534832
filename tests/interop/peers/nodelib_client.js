#!/usr/bin/env node
/*
 * An lwm2m-node-lib LwM2M 1.0 *client*, driven by tests/interop over stdin/stdout.
 *
 * Usage: node nodelib_client.js <server-host> <server-port> <endpoint> [lifetime-seconds]
 *    or: LWM2M_SERVER_HOST=.. LWM2M_SERVER_PORT=.. LWM2M_ENDPOINT=.. node nodelib_client.js
 *
 * It exposes a small FOTA-shaped device: /1/0 (Server), /3/0 (Device), /5/0 (Firmware
 * Update), registers with the server and then prints one JSON object per line on stdout:
 *
 *   {"event":"registered","location":"rd/..","local_port":N}
 *   {"event":"request","method":"GET","path":"/3/0/0","content_format":<int|null>,"accept":..,
 *    "observe":true|false,"payload_hex":".."}     (every request the server sends us)
 *   {"event":"write","path":"/5/0/1","value":"coap://..."}
 *   {"event":"execute","path":"/5/0/2","args":"..."}
 *   {"event":"read","path":"/3/0/0","value":"..."}
 *   {"event":"set","path":"/3/0/9","value":"55"}
 *   {"event":"updated","local_port":N} {"event":"deregistered"}
 *   {"event":"error","where":"..","message":".."}
 *
 * Commands, one per line on stdin:
 *   set /3/0/9 55     change a resource (an observer gets a notification)
 *   update            send a registration Update
 *   deregister        send a De-register
 *   quit              exit (also on stdin EOF)
 *
 * What the library does on the wire (and the tests rely on): it answers every Read in
 * text without a Content-Format option, stores a Write's payload bytes as the new value,
 * and never answers (not even an ACK) a request whose Accept or Content-Format node-coap
 * 0.22 does not know (it knows 0, 40, 41, 42, 47, 50, 60 and the configured 1541).
 *
 * lwm2m-node-lib logs through logops to stdout; the logger is sent to stderr so stdout
 * carries nothing but the JSON lines.
 */
'use strict';

var logger = require('logops');
logger.setStream(process.stderr);
logger.setLevel(process.env.NODELIB_LOG_LEVEL || 'FATAL');

var lwm2m = require('lwm2m-node-lib');
var client = lwm2m.client;
var readline = require('readline');

var host = process.argv[2] || process.env.LWM2M_SERVER_HOST || '127.0.0.1';
var port = Number(process.argv[3] || process.env.LWM2M_SERVER_PORT || 5683);
var endpoint = process.argv[4] || process.env.LWM2M_ENDPOINT || 'nodelib-client';
var lifetime = String(process.argv[5] || process.env.LWM2M_LIFETIME || 60);

var deviceInfo = null;

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(where, error) {
    emit({event: 'error', where: where, message: String(error && (error.message || error.name) || error),
        code: error && error.code || null});
}

var config = {
    client: {
        lifetime: lifetime,
        version: '1.0',
        logLevel: process.env.NODELIB_LOG_LEVEL || 'FATAL',
        observe: {period: 3000},
        ipProtocol: 'udp4',
        serverProtocol: 'udp4',
        formats: [{name: 'lightweightm2m/text', value: 1541}],
        writeFormat: 'lightweightm2m/text'
    }
};

// Resources as lwm2m-node-lib stores them: every value is a string (it only speaks text).
var initial = [
    ['/1/0', '0', '1'],                       // Short Server ID
    ['/1/0', '1', lifetime],                  // Lifetime
    ['/1/0', '7', 'U'],                       // Binding
    ['/3/0', '0', 'lwm2m-node-lib'],          // Manufacturer
    ['/3/0', '1', 'fotakit-interop'],         // Model Number
    ['/3/0', '3', '1.0.0'],                   // Firmware Version
    ['/3/0', '9', '87'],                      // Battery Level (changes via "set")
    ['/3/0', '16', 'U'],                      // Supported Binding and Modes
    ['/5/0', '1', ''],                        // Package URI (writable)
    ['/5/0', '3', '0'],                       // State
    ['/5/0', '5', '0']                        // Update Result
];

function createObjects(done) {
    var uris = [];
    initial.forEach(function (r) {
        if (uris.indexOf(r[0]) < 0) {
            uris.push(r[0]);
        }
    });
    var pending = uris.length;
    uris.forEach(function (uri) {
        client.registry.create(uri, function (error) {
            if (error) {
                fail('create ' + uri, error);
            }
            pending -= 1;
            if (pending === 0) {
                setAll(done);
            }
        });
    });
}

function setAll(done) {
    var pending = initial.length;
    initial.forEach(function (r) {
        client.registry.setResource(r[0], r[1], r[2], function (error) {
            if (error) {
                fail('set ' + r[0] + '/' + r[1], error);
            }
            pending -= 1;
            if (pending === 0) {
                done();
            }
        });
    });
}

// node-coap has already turned Content-Format/Accept numbers into names; its converter
// turns them back, so the test sees the number that was on the wire.
var optionConverter = require('coap/lib/option_converter');

function uintOption(req, name) {
    var found = null;
    (req._packet.options || []).forEach(function (o) {
        if (o.name === name) {
            found = o.value;
        }
    });
    if (found === null) {
        return null;
    }
    var raw = optionConverter.toBinary(name, found);
    var n = 0;
    for (var i = 0; i < raw.length; i++) {
        n = n * 256 + raw[i];
    }
    return n;
}

function hasOption(req, name) {
    return (req._packet.options || []).some(function (o) {
        return o.name === name;
    });
}

function installHandlers(info) {
    // A second 'request' listener only observes; the library's own router answers.
    info.serverInfo.server.on('request', function (req) {
        emit({
            event: 'request',
            method: req.method,
            path: req.url.split('?')[0],
            query: req.url.indexOf('?') >= 0 ? req.url.split('?')[1] : null,
            content_format: uintOption(req, 'Content-Format'),
            accept: uintOption(req, 'Accept'),
            observe: hasOption(req, 'Observe'),
            payload_hex: req.payload ? req.payload.toString('hex') : ''
        });
    });
    client.setHandler(info.serverInfo, 'write', function (objectType, objectId, resourceId, value, callback) {
        emit({event: 'write', path: '/' + objectType + '/' + objectId + '/' + resourceId, value: value});
        callback(null);
    });
    client.setHandler(info.serverInfo, 'execute', function (objectType, objectId, resourceId, args, callback) {
        emit({event: 'execute', path: '/' + objectType + '/' + objectId + '/' + resourceId, args: args});
        callback(null);
    });
    client.setHandler(info.serverInfo, 'read', function (objectType, objectId, resourceId, value, callback) {
        emit({event: 'read', path: '/' + objectType + '/' + objectId + '/' + resourceId, value: value});
        callback(null, value);
    });
}

function register() {
    client.register(host, port, null, endpoint, function (error, info) {
        if (error) {
            fail('register', error);
            return;
        }
        deviceInfo = info;
        installHandlers(info);
        emit({event: 'registered', location: info.location, local_port: info.localPort});
    });
}

function handleCommand(line) {
    var words = line.trim().split(/\s+/);
    var cmd = words[0];
    if (!cmd) {
        return;
    }
    if (cmd === 'set') {
        var path = words[1] || '';
        var value = words.slice(2).join(' ');
        var cut = path.lastIndexOf('/');
        client.registry.setResource(path.substring(0, cut), path.substring(cut + 1), value, function (error) {
            if (error) {
                fail('set', error);
            } else {
                emit({event: 'set', path: path, value: value});
            }
        });
    } else if (cmd === 'update') {
        client.update(deviceInfo, function (error, info) {
            if (error) {
                fail('update', error);
            } else {
                installHandlers(info);
                emit({event: 'updated', local_port: info.localPort});
            }
        });
    } else if (cmd === 'deregister') {
        client.unregister(deviceInfo, function (error) {
            if (error) {
                fail('deregister', error);
            } else {
                emit({event: 'deregistered'});
            }
        });
    } else if (cmd === 'quit') {
        process.exit(0);
    } else {
        fail('command', 'unknown command: ' + line);
    }
}

client.init(config);
createObjects(register);

readline.createInterface({input: process.stdin}).on('line', handleCommand).on('close', function () {
    process.exit(0);
});
