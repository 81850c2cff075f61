// Flushes Cassandra tables to disk, as `nodetool flush KEYSPACE TABLE...` does, through the
// JMX of a server that opens no JMX port: it attaches to the server's process (same user), starts
// the JVM's local management agent there (as jconsole does) and calls StorageService's
// forceKeyspaceFlush, which returns once the SSTables are written.
//
//     java Flush.java PID KEYSPACE TABLE...
//
// Run by the benchmark (bench/src/servers.rs) with the server's own java.

import com.sun.tools.attach.VirtualMachine;
import java.util.Arrays;
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public class Flush {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: java Flush.java PID KEYSPACE TABLE...");
            System.exit(2);
        }
        String address;
        VirtualMachine server = VirtualMachine.attach(args[0]);
        try {
            address = server.startLocalManagementAgent();
        } finally {
            server.detach();
        }
        String[] tables = Arrays.copyOfRange(args, 2, args.length);
        try (JMXConnector connector = JMXConnectorFactory.connect(new JMXServiceURL(address))) {
            MBeanServerConnection beans = connector.getMBeanServerConnection();
            beans.invoke(
                    new ObjectName("org.apache.cassandra.db:type=StorageService"),
                    "forceKeyspaceFlush",
                    new Object[] {args[1], tables},
                    new String[] {String.class.getName(), String[].class.getName()});
        }
    }
}
