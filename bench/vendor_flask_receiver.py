# ruff: noqa
# The vendor's sample webhook receiver ("Sample Webhook Setup", step 2, server.py), kept verbatim as the
# baseline of bench/bench_serve.py; the only change is the port, taken from argv or $PORT (default 5000).
# Run it as the vendor does:  python bench/vendor_flask_receiver.py [PORT]
import os
import sys

import requests
from flask import Flask, request, jsonify

app = Flask(__name__)

# Store transcripts (in production, use a proper database)
transcripts = {}

@app.route('/webhook', methods=['POST'])
def handle_tavus_callback():
    data = request.json
    event_type = data.get('event_type')
    conversation_id = data.get('conversation_id')
    
    print(f"Received callback: {event_type} for conversation {conversation_id}")
    
    if event_type == 'system.replica_joined':
        print("✅ Replica has joined the conversation")
        
    elif event_type == 'system.shutdown':
        shutdown_reason = data['properties'].get('shutdown_reason')
        print(f"🔚 Conversation ended: {shutdown_reason}")
    
    elif event_type == 'application.recording_ready':
        s3_key = data['properties'].get('s3_key')
        print(f"s3_key : {s3_key}")

    elif event_type == 'application.perception_analysis':
        analysis = data['properties'].get('analysis')
        print(f"analysis : {analysis}")
        
    elif event_type == 'application.transcription_ready':
        print("📝 Transcript is ready!")
        transcript = data['properties']['transcript']
        transcripts[conversation_id] = transcript
        
        # Process the transcript
        analyze_conversation(conversation_id, transcript)
        
    return jsonify({"status": "success"}), 200

def analyze_conversation(conversation_id, transcript):
    """Analyze the conversation transcript"""
    user_turns = len([msg for msg in transcript if msg['role'] == 'user'])
    assistant_turns = len([msg for msg in transcript if msg['role'] == 'assistant'])
    
    print(f"Conversation {conversation_id} analysis:")
    print(f"- User turns: {user_turns}")
    print(f"- Assistant turns: {assistant_turns}")
    print(f"- Total messages: {len(transcript)}")

    print("Conversation : ")

    for msg in transcript:
        print(f"{msg['role']} : {msg['content']}")

if __name__ == '__main__':
    app.run(port=int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("PORT", 5000)), debug=True)
